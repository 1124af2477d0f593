"""Speed measurements, run by hand or by `make benchmark`; not collected by pytest."""
