"""Analyses over runs: sampling designs, global sensitivity indices, and feedback loops
(structure, polarity, link scores and loop dominance).

The top layer under the command line: it uses the engines (``run``, ``run_ensemble``)
and never the other way round. The public names are re-exported by :mod:`pysd_runner`.
"""
