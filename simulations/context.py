"""What a workload or a hostile author needs of the run it acts in.

:class:`simulations.runner.Simulation` is the one implementation; the workloads and the hostile
authors see it through :class:`RunContext`, so they sit below the runner and import nothing
above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from simulations.checker import Checker
from simulations.engine import Factory, World
from simulations.process import SimNode


class RunContext(Protocol):
    @property
    def world(self) -> World: ...
    @property
    def factory(self) -> Factory: ...
    @property
    def checker(self) -> Checker: ...
    @property
    def honest(self) -> list[SimNode]: ...
    @property
    def opened(self) -> list[str]:
        """Ids of the auctions opened so far (targets for bids and hostile acts)."""
    @property
    def notes(self) -> list[str]:
        """Remarks for the report."""

    def act(self, node: SimNode, make: Callable[[Any, Any, int], Any]) -> Any:
        """Let ``node``'s user author an event; None if the node is down or refuses locally."""
