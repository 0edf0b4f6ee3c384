"""Command line: ``adaspx inspect PATH.h5`` prints an artifact's tree; ``adaspx show PATH --image ID`` draws an
artifact, or a round folder, for one image over the image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adaspx import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adaspx", description=__doc__)
    parser.add_argument("--version", action="version", version=f"adaspx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_inspect = sub.add_parser("inspect", help="print an HDF5 artifact's attributes, groups and datasets")
    p_inspect.add_argument("path", help="an .h5 artifact written by the workflow")
    p_inspect.add_argument("--limit", type=int, default=10, help="datasets shown per group (default 10; 0 shows all)")
    p_show = sub.add_parser("show", help="draw an HDF5 artifact, or a round folder's panel, over one image")
    p_show.add_argument("path", help="an .h5 artifact, or a round folder (results/<dataset>/<exp>/seed<s>/round<r>)")
    p_show.add_argument("--image", required=True, help="the pool image id")
    p_show.add_argument("-o", "--output", help="PNG to write (default: <artifact stem>_<image>.png here)")
    p_show.add_argument("--view", choices=("argmax", "uncertainty"), default="argmax",
                        help="probabilities: class of highest probability, or p(2)/p(1) (default argmax)")  # fmt: skip
    FORMATS = ("label-studio", "cvat", "coco")  # adaspx.handoff.FORMATS (imported only when used: it is slow)
    p_export = sub.add_parser("export", help="write a round's queries as an annotation tool's import file")
    p_export.add_argument("round", help="a round folder (results/<dataset>/<exp>/seed<s>/round<r>)")
    p_export.add_argument("--format", required=True, choices=FORMATS)
    p_export.add_argument("-o", "--output", required=True, help="the file to write")
    p_export.add_argument("--python", default=".venv-label-studio/bin/python",
                          help="label-studio: the Python with label-studio-sdk (default %(default)s)")  # fmt: skip
    p_export.add_argument("--document-root", default="/", help="label-studio: the server's LOCAL_FILES_DOCUMENT_ROOT")
    p_import = sub.add_parser("import", help="read a tool's export of a round's answers into the round's people.csv")
    p_import.add_argument("round", help="the round folder the answers are of")
    p_import.add_argument("file", help="the tool's export (Label Studio JSON, CVAT for images 1.1 XML, COCO JSON)")
    p_import.add_argument("--format", required=True, choices=FORMATS)
    p_import.add_argument("-o", "--output", help="people.csv to write (default: the round folder's people.csv)")
    args = parser.parse_args(argv)

    if args.command == "show":
        return show(args)
    if args.command in ("export", "import"):
        return handoff(args)

    if args.command == "inspect":
        import h5py

        from adaspx.h5io import describe

        if Path(args.path).is_dir():
            print(f"adaspx inspect: {args.path}: a folder; give one of the .h5 artifacts in it", file=sys.stderr)
            return 2
        try:
            print(describe(args.path, limit=args.limit or None))
        except FileNotFoundError:
            print(f"adaspx inspect: {args.path}: no such file", file=sys.stderr)
            return 2
        except OSError as err:
            if not h5py.is_hdf5(args.path):
                print(f"adaspx inspect: {args.path}: not an HDF5 file", file=sys.stderr)
            else:  # e.g. truncated by a full disk or an interrupted copy
                reason = " ".join(str(err).split())
                print(f"adaspx inspect: {args.path}: unreadable HDF5 file ({reason})", file=sys.stderr)
            return 2
    return 0


def handoff(args) -> int:
    """``adaspx export`` / ``adaspx import``: print the file written, or one line on stderr and exit status 2."""
    from adaspx.datasets import DatasetError
    from adaspx.h5io import ArtifactError
    from adaspx.handoff import HandoffError, export, import_answers
    from adaspx.pipeline.people import PeopleError
    from adaspx.show import ShowError

    try:
        if args.command == "export":
            print(export(args.round, args.format, args.output, python=args.python, document_root=args.document_root))
        else:
            print(import_answers(args.round, args.format, args.file, args.output or Path(args.round) / "people.csv"))
    except (HandoffError, PeopleError, ShowError, ArtifactError, DatasetError) as err:
        print(f"adaspx {args.command}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


def show(args) -> int:
    """``adaspx show``: write the picture and print its path, or one line on stderr and exit status 2."""
    from adaspx.datasets import DatasetError
    from adaspx.h5io import ArtifactError
    from adaspx.show import ShowError, render

    try:
        print(render(args.path, args.image, args.output, args.view))
    except (ShowError, ArtifactError, DatasetError) as err:
        print(f"adaspx show: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
