"""Export a checkpoint for use outside this project: ONNX for any runtime, safetensors for any framework.

    sr-export models/best.pt          # models/best.onnx and models/best.safetensors
    sr-export models/best.pt --fp16   # and models/best.fp16.onnx, for GPUs

Each file is checked against the PyTorch model before it is moved into place (on batches of odd
sizes) and is refused if they disagree; the agreement is printed. What each file holds (inputs,
outputs, metadata): docs/export.md.
"""

from pathlib import Path

from sr_core.checkpoint import MODEL_HELP
from sr_core.cli import argument_parser, run
from sr_core.export import export


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-export")
    parser.add_argument("model", type=Path, help=MODEL_HELP)
    parser.add_argument("--out", type=Path, help="where the files go (default: beside the model)")
    parser.add_argument("--fp16", action="store_true", help="also an fp16 ONNX file, NAME.fp16.onnx, for GPUs")
    args = parser.parse_args(argv)
    folder, name = args.out or args.model.parent, args.model.stem
    export(args.model, folder / f"{name}.onnx", folder / f"{name}.safetensors",
           folder / f"{name}.fp16.onnx" if args.fp16 else None)



def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
