"""The default install gives sandboxes the stack hosted interpreters have: sympy and scipy beside
numpy, pandas and matplotlib. The fork server preloads only the latter three, so a ready session
has not paid for sympy or scipy until its code imports them."""

from __future__ import annotations

from engine.config import Settings
from engine.core.session import Session

CODE = """
import sys
preloaded = sorted(m for m in ("numpy", "sympy", "scipy") if m in sys.modules)
import sympy, scipy.stats
preloaded, int(sympy.factorint(2**32 + 1)[641]), round(float(scipy.stats.norm.cdf(0)), 2)
"""


async def test_sympy_and_scipy_import_in_a_subprocess_session(session: Session) -> None:
    result = await session.execute(CODE)
    assert result.error is None, result.error
    assert (result.result_text or "").endswith(", 1, 0.5)"), result.result_text
    if session.backend.value == "subprocess":  # a fork of the fork server: numpy was there
        assert result.result_text == "(['numpy'], 1, 0.5)"


def test_the_fork_server_does_not_preload_them() -> None:
    assert not {"sympy", "scipy"} & {m.split(".")[0] for m in Settings().preload}
