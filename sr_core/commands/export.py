"""The model for use outside this project: ONNX for any runtime, safetensors for any framework.

    sr-export models/best.pt          # models/best.onnx and models/best.safetensors
    sr-export models/best.pt --fp16   # and models/best.fp16.onnx, for GPUs

- ONNX (opset 18): input `input`, (N, 3, H, W) float in 0..1 (RGB); output `output`, (N, 3,
  scale*H, scale*W), not clamped; N, H and W are dynamic. BatchNorm is folded into the
  convolutions. The fp16 file takes and gives float16.
- safetensors: the weights as the .pt holds them, no code; loadable without pickle.

Both carry the model config as JSON under the metadata key `sr_core.model_config`. Each file is
checked against the PyTorch model before it is moved into place (on batches of odd sizes) and is
refused if they disagree; the agreement is printed.
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
