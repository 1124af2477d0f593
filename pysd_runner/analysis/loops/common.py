"""What the loop analysis shares: its constants, the Loop type, and networkx imported on first use."""

from __future__ import annotations

from dataclasses import dataclass




#: Default cap on the number of loops enumerated before giving up with a clear message.
#: reformism has 163,540 (most of them 30-55 variables long), and its dominance analysis
#: takes about a minute and 4 GB; memory grows with the loops. Keep commands_loops'
#: --max-loops help in step.
DEFAULT_MAX_LOOPS = 250_000


#: Name of the file beside a model that names its loops.
LOOPS_FILE = "loops.toml"


#: Share of the change that the dominant set of loops must explain.
DOMINANCE_SHARE = 0.5


POSITIVE, NEGATIVE, AMBIGUOUS = "+", "-", "?"


REINFORCING, BALANCING = "R", "B"


def nx_module():
    import networkx

    return networkx


@dataclass(frozen=True)
class Loop:
    """One elementary feedback loop.

    ``variables`` are Python names in cycle order (the last one links back to the first),
    ``names`` the Vensim names, ``links`` the polarity of each link ``variables[i] ->
    variables[i + 1]``. ``polarity`` is ``"R"`` (reinforcing: an even number of negative
    links), ``"B"`` (balancing) or ``"?"`` (some link's sign depends on the state).
    """

    id: str
    variables: tuple[str, ...]
    names: tuple[str, ...]
    links: tuple[str, ...]
    polarity: str
    name: str = ""
    title: str = ""
    partition: int = 0
    #: Why the model's loops.toml leaves this loop out of the dominance analysis ("" if not).
    excluded: str = ""

    @property
    def length(self) -> int:
        return len(self.variables)

    @property
    def edges(self) -> list[tuple[str, str]]:
        n = len(self.variables)
        return [(self.variables[i], self.variables[(i + 1) % n]) for i in range(n)]

    def describe(self) -> str:
        """The loop as text: ``a -> b -> c`` with Vensim names."""
        return " -> ".join(self.names)

    @property
    def label(self) -> str:
        """``"B1 Profit squeeze"`` for a named loop, the loop id for others."""
        return f"{self.name} {self.title}".strip() if self.name else self.id
