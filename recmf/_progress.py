"""Progress bars: the one place recmf makes one (training epochs, model
selection, ...)."""
from __future__ import annotations

import importlib.util


def progress(total, desc, verbose, unit="epoch"):
    """A tqdm bar over ``total`` steps, or None when not ``verbose``.

    tqdm is a dependency: the notebook widget when ipywidgets is installed
    (``tqdm.auto``), else the text bar on stderr -- ``tqdm.auto`` without
    ipywidgets would print a warning into every notebook."""
    if not verbose:
        return None
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=True)
