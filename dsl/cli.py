"""The ``nnc`` command: draw, summarise and type-check the models in a Python file.

::

    nnc render examples/mlp.py                 # writes examples/mlp.svg, prints the path
    nnc render model.py:encoder -o enc.png     # a named model in the file
    nnc render model.py -f pdf --rankdir LR --depth 1
    nnc render model.py -f dot                 # Graphviz source, needs no Graphviz program
    nnc render model.py --grad -o backward.svg # the backward pass, layer by layer
    nnc render model.py --ops -o ops.svg       # the primitives of the forward and backward passes
    nnc render model.py -o model.html          # an interactive page, one self-contained file
    nnc summary model.py                       # layers, types, parameter counts, total
    nnc check model.py                         # type-checks every model in the file
    nnc export model.py -o model.onnx          # ONNX, with fresh parameters or --params trained.npz
    nnc --version                              # prints nnc 0.1.0

Exit codes: 0 done; 1 the model file or a model in it is wrong (missing, does not parse,
raises, a type mismatch, no such model) or Graphviz failed; 2 a wrong command line;
3 Graphviz's ``dot`` is missing (the ``.gv`` source is written, and how to finish is printed).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nnc import __version__
from nnc.backend.errors import NNCError

from .draw import RANKDIRS
from .modelfile import LoadError, find_model, load_file, pick, split_spec
from .render import FORMATS, SUFFIX, GraphvizNotFound, RenderError, format_of, render
from .summary import summary

EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_NO_GRAPHVIZ = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnc",
        description="Draw, summarise, type-check and export nnc models defined in a Python file.",
        epilog="MODEL is file.py or file.py:NAME; without NAME, the file's variable 'model', "
        "else its only nnc model. Exit codes: 0 done, 1 model or Graphviz error, 2 usage, "
        "3 Graphviz missing (source written).",
    )
    parser.add_argument("--version", action="version", version=f"nnc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{render,summary,check,export}")

    r = sub.add_parser(
        "render", help="draw a model (svg, png, pdf, an interactive html page) or write its Graphviz source"
    )
    r.add_argument("model", metavar="MODEL")
    r.add_argument(
        "-o",
        "--output",
        help="output file; its suffix gives the format "
        "(default: the model file's name with the format's suffix, beside it)",
    )
    r.add_argument("-f", "--format", choices=FORMATS, help="svg (default), png, pdf, dot or html")
    r.add_argument("--rankdir", choices=RANKDIRS, default="TB", help="direction of the flow (default TB)")
    r.add_argument("--dpi", type=int, help="resolution (default 200 for png)")
    r.add_argument("--depth", type=int, help="levels of combinators drawn as clusters (default: all)")
    r.add_argument(
        "--show-shapes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="label edges with the types that flow (default on)",
    )
    r.add_argument(
        "--show-dtype",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="add the parameters' dtype to edge labels",
    )
    r.add_argument("--dtype", default="float32", help="the parameters' dtype (default float32)")
    r.add_argument(
        "--show-layer-names",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show each layer's path (default on)",
    )
    r.add_argument(
        "--expand-nested",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw combinators as clusters; --no-expand-nested is --depth 0",
    )
    r.add_argument(
        "--collapse-repeats",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw identical repeated blocks once with 'x N' (default on)",
    )
    r.add_argument(
        "--show-batch",
        action="store_true",
        help="label edges with the shapes of a batch, Keras' way: (None, 64)",
    )
    r.add_argument(
        "--grad",
        action="store_true",
        help="draw the backward pass by layers: gradient steps, cotangent types, parameter gradients",
    )
    r.add_argument(
        "--ops",
        action="store_true",
        help="draw the primitives of the forward and backward passes, traced on zeros (a batch of 1)",
    )

    s = sub.add_parser("summary", help="print a table of the layers, types and parameters")
    s.add_argument("model", metavar="MODEL")
    s.add_argument("--depth", type=int, help="levels of combinators to open (default: all)")
    s.add_argument("--dtype", default="float32", help="the parameters' dtype, for their size")

    c = sub.add_parser("check", help="type-check every model in a file without running data")
    c.add_argument("model", metavar="MODEL", help="file.py (all its models) or file.py:NAME")

    e = sub.add_parser("export", help="write a model as an ONNX file (needs nnc[onnx])")
    e.add_argument("model", metavar="MODEL")
    e.add_argument(
        "-o", "--output", help="the .onnx file (default: the model file's name with .onnx, beside it)"
    )
    e.add_argument(
        "--params", help="a checkpoint written by nnc.save (default: fresh parameters from --seed)"
    )
    e.add_argument("--seed", type=int, default=0, help="the seed of fresh parameters (default 0)")
    e.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float64"),
        help="the dtype of fresh parameters (default float32)",
    )
    e.add_argument("--opset", type=int, default=17, help="the ONNX operator set, 17 or later (default 17)")
    return parser


def _fail(command: str, message: str, code: int) -> int:
    print(f"nnc {command}: {message}", file=sys.stderr)
    return code


def _default_output(spec: str, fmt: str) -> Path:
    path, name = split_spec(spec)
    stem = Path(path).stem + (f"_{name.replace('.', '_')}" if name else "")
    return Path(path).with_name(stem + SUFFIX.get(fmt, f".{fmt}"))


def _render(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 0:
        return _fail("render", f"--depth must be 0 or more, got {args.depth}", EXIT_USAGE)
    if args.output == "-" and args.format not in (None, "dot"):
        return _fail("render", "only Graphviz source (-f dot) can be written to standard output", EXIT_USAGE)
    if args.grad and args.ops:
        return _fail(
            "render",
            "--grad and --ops draw different pictures (the layers' gradient steps; the primitives of "
            "both passes, which already hold the backward): choose one",
            EXIT_USAGE,
        )
    try:
        if args.output not in (None, "-"):
            format_of(args.output, args.format)
    except RenderError as err:
        return _fail("render", str(err), EXIT_USAGE)
    _, model = find_model(args.model)
    options = dict(
        rankdir=args.rankdir,
        show_shapes=args.show_shapes,
        show_dtype=args.show_dtype,
        show_layer_names=args.show_layer_names,
        expand_nested=args.expand_nested,
        depth=args.depth,
        collapse_repeats=args.collapse_repeats,
        dtype=args.dtype,
        show_batch=args.show_batch,
        grad=args.grad,
        ops=args.ops,
    )
    if args.output == "-":
        from .draw import Options
        from .render import picture_source

        grad, ops = options.pop("grad"), options.pop("ops")
        sys.stdout.write(picture_source(model, Options(**options), grad=grad, ops=ops))
        return EXIT_OK
    out = Path(args.output) if args.output else _default_output(args.model, args.format or "svg")
    try:
        written = render(model, out, format=args.format, dpi=args.dpi, **options)
    except GraphvizNotFound as err:
        return _fail("render", str(err), EXIT_NO_GRAPHVIZ)
    print(written)
    return EXIT_OK


def _summary(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 0:
        return _fail("summary", f"--depth must be 0 or more, got {args.depth}", EXIT_USAGE)
    name, model = find_model(args.model)
    print(f"{split_spec(args.model)[0]}:{name}  {model.signature}")
    print(summary(model, depth=args.depth, dtype=args.dtype))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    path, name = split_spec(args.model)
    file = load_file(path)  # composing checks types: a mismatch in the file fails right here
    models = [pick(file, name)] if name else [(n, m) for n, m, _ in file.models]
    if not models:
        return _fail("check", f"{path} assigns no nnc model at top level; nothing to check", EXIT_MODEL)
    width = max(len(n) for n, _ in models)
    for n, m in models:
        count = summary(m)
        size = (
            f"{count.total:,} parameters"
            if count.total is not None
            else f"parameters not known yet: {count.unknown}"
        )
        print(f"ok  {n.ljust(width)}  {m.signature}  ({size})")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from .export import OPSET, export

    if args.opset < OPSET:
        return _fail("export", f"--opset must be {OPSET} or later, got {args.opset}", EXIT_USAGE)
    _, model = find_model(args.model)
    if args.params is not None:
        from .checkpoint import load

        loaded = load(args.params, model, stats=model.keeps_stats)
        params, stats = loaded if model.keeps_stats else (loaded, None)
    else:
        params, stats = model.init(seed=args.seed, dtype=args.dtype), model.init_stats(args.dtype)
    out = Path(args.output) if args.output else _default_output(args.model, "onnx")
    export(model, params, out, stats=stats if model.keeps_stats else None, opset=args.opset)
    print(out)
    return EXIT_OK


COMMANDS = {"render": _render, "summary": _summary, "check": _check, "export": _export}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nnc`` command with ``argv`` (default: the process's arguments); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse's usage errors and --help
        return int(stop.code or 0)
    try:
        return COMMANDS[args.command](args)
    except LoadError as err:
        return _fail(args.command, str(err), EXIT_MODEL)
    except (RenderError, NNCError, ValueError) as err:
        return _fail(args.command, str(err), EXIT_MODEL)
