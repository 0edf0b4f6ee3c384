"""adaspx: superpixel-based active learning for semantic segmentation."""

__version__ = "0.1.0"

IGNORE_INDEX = 255
"""Label value meaning void / unlabeled / sieved, in ground truth and in training targets."""


def compiled(name: str):
    """The compiled extension ``adaspx.<name>`` (built from ``src/adaspx/<name>.pyx``), or an ImportError that says
    how to build it: a source checkout that was never installed has none."""
    import importlib

    try:
        return importlib.import_module(f"adaspx.{name}")
    except ImportError as error:
        raise ImportError(
            f"adaspx needs its compiled extension adaspx.{name}, which is not built: install the package "
            "(pip install -e . from the repository root), which compiles it"
        ) from error
