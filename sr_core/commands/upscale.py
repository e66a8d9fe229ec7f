"""Upscale any images 4x: files or folders, any size, as PNGs of the same name.

    sr-upscale photo.jpg screenshots/ --out upscaled/            # the general model that comes with the package
    sr-upscale models/best.pt screenshots/ --out upscaled/ --tile 256 --workers 8     # a model of yours

Folders contribute the images directly inside them. Large images run in overlapping tiles, so
memory is bounded by the output image; same-size images are batched. Inputs are never written
over: the output folder may not be an input folder or hold an input file. A file that cannot be
read is named and skipped, every other one is written, and the command then exits with status 1
naming each skipped file.
"""

import ctypes
import logging
from pathlib import Path

from sr_core.cli import argument_parser, run
from sr_core.commands.arguments import add_model_and_inputs, model_and_inputs
from sr_core.config import InferenceConfig
from sr_core.images import IMAGE_SUFFIXES, list_images, special_file
from sr_core.inference import add_arguments, config_from, inference_model, upscale_files


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def map_large_buffers() -> None:
    """Makes glibc give every allocation over 128 KiB its own mapping, returned to the system when
    freed. Left to its dynamic threshold, glibc keeps freed tile buffers in its heap, and the peak
    memory of a large image grew by 3 more bytes per output pixel (measured in
    benchmarks/real_scale.py). Elsewhere than glibc there is nothing to set."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass


def collect_inputs(inputs: list[Path], out_dir: Path) -> list[Path]:
    """The image files named by `inputs` (files, or folders of images); an `out_dir` that holds any
    of them is refused, so no output can land on an input or be read as one next time."""
    paths = []
    for path in inputs:
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        if path.is_dir():
            paths += list_images(path)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            paths.append(path)
        elif kind := special_file(path):
            raise ValueError(f"{path}: {kind}, not a file; give an image file")
        else:
            raise ValueError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)}) or a folder")
    if not paths:
        raise ValueError(f"no images in {', '.join(map(str, inputs))}")
    if out_dir.resolve() in {path.resolve().parent for path in paths}:
        raise ValueError(f"--out {out_dir} holds inputs; choose a folder of its own, so no input is written over")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-upscale")
    add_model_and_inputs(parser, "image files and folders of images")
    parser.add_argument("--out", type=Path, required=True, help="the folder the PNGs go to")
    add_arguments(parser)
    parser.add_argument("--compress-level", type=int, default=InferenceConfig().png_compress_level,
                        help="PNG zlib level, 0 (fast, large) .. 9 (slow, small)")
    args = parser.parse_args(argv)
    model_path, inputs = model_and_inputs(parser, args.paths, "images or folders to upscale")
    map_large_buffers()
    config = config_from(args, png_compress_level=args.compress_level)
    paths = collect_inputs(inputs, args.out)
    model = inference_model(model_path, config)
    written = upscale_files(model, paths, args.out, config, keep_alpha_and_profile=True, keep_going=True)
    logging.info("wrote %d image%s to %s", len(written), "" if len(written) == 1 else "s", args.out)


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
