"""Process-wide settings of recmf (the shape of scikit-learn's config API)."""
import contextlib

from . import _core


def get_config():
    """Return recmf's current process-wide settings.

    Returns
    -------
    dict
        ``{"exact_subnormals": bool}`` -- see :func:`set_config`.

    See Also
    --------
    set_config, config_context
    """
    return {"exact_subnormals": bool(_core.exact_subnormals())}


def set_config(exact_subnormals=None):
    """Change recmf's process-wide settings; ``None`` leaves a setting as it is.

    Parameters
    ----------
    exact_subnormals : bool or None
        ``False`` (the default): recmf's own compute -- ``fit``, ``recommend``
        (so also ``evaluate``) and ``score``, on the calling thread, its
        OpenMP threads and OpenBLAS's jobs -- flushes subnormal floats to zero
        (x86 FTZ/DAZ, AArch64 FZ).  On Intel cores every operation on a
        subnormal costs ~100x a normal one, and NeuralMF's training produces
        them after a few epochs.  Each thread gets its own floating-point
        mode back when the call returns: your NumPy code keeps IEEE
        behaviour.  ``True`` keeps IEEE subnormals inside recmf too, for
        results bit for bit as an IEEE computation gives (slower on Intel).
        The setting applies to calls that start after it is made, from any
        thread.

    Raises
    ------
    TypeError
        If ``exact_subnormals`` is not a bool or None.

    See Also
    --------
    get_config, config_context
    """
    if exact_subnormals is not None:
        if not isinstance(exact_subnormals, bool):
            raise TypeError(f"exact_subnormals must be a bool or None, got {type(exact_subnormals).__name__}")
        _core.exact_subnormals(exact_subnormals)


@contextlib.contextmanager
def config_context(*, exact_subnormals=None):
    """Context manager: :func:`set_config` inside the block, the previous settings after it.

    Parameters
    ----------
    exact_subnormals : bool or None
        As in :func:`set_config`.

    Notes
    -----
    The settings are process-wide, not per thread: another thread's recmf
    calls that start inside the block see them too.

    Examples
    --------
    >>> import recmf
    >>> with recmf.config_context(exact_subnormals=True):
    ...     recmf.get_config()["exact_subnormals"]
    True
    """
    before = get_config()
    set_config(exact_subnormals=exact_subnormals)
    try:
        yield
    finally:
        set_config(**before)
