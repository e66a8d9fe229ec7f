"""Lay out the public data sets of the general preset and the benchmarks, from their published copies.

    sr-datasets benchmarks SelfExSR-master/       # Set5, Set14, BSD100 (x4)
    sr-datasets t91 SRCNN-Tensorflow-master/Train/  # the 91 images, BMP
    sr-datasets bsd200 IDN-Caffe-master/train/291/  # the 200 BSDS training JPEGs

Each source is a folder of a public repository's download (GitHub's "Download ZIP", unpacked):
jbhuang0604/SelfExSR (`data/{Set5,Set14,BSD100}/image_SRF_4/img_NNN_SRF_4_{HR,LR}.png`: the HR and
MATLAB-bicubic LR of the published tables), tegg89/SRCNN-Tensorflow (`Train/*.bmp`) and
Zheng222/IDN-Caffe (`train/291/*.jpg`, beside the T91 BMPs, which are not taken). Files are copied
byte for byte into the layout the pipeline reads, `data/benchmarks/x4/<set>/{hr,lr}/img_NNN.png`
and `data/datasets/{T91,BSD200}/hr/`, after the count of each set is checked.
"""

import logging
import shutil
from pathlib import Path

from sr_core.cli import argument_parser, run

log = logging.getLogger(__name__)

BENCHMARKS = {"Set5": 5, "Set14": 14, "BSD100": 100}  # pairs in each x4 test set
TRAINING = {"t91": ("T91", "*.bmp", 91), "bsd200": ("BSD200", "*.jpg", 200)}  # folder, files, count


def copy_all(pairs: list[tuple[Path, Path]]) -> None:
    for source, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def lay_out_benchmarks(source: Path, out: Path) -> None:
    """SelfExSR's `data/<set>/image_SRF_4/img_NNN_SRF_4_{HR,LR}.png` as `out/x4/<set>/{hr,lr}/img_NNN.png`."""
    pairs = []
    for name, count in BENCHMARKS.items():
        folder = source / "data" / name / "image_SRF_4"
        found = {kind: sorted(folder.glob(f"img_*_SRF_4_{kind}.png")) for kind in ("HR", "LR")}
        if len(found["HR"]) != count or len(found["LR"]) != count:
            raise ValueError(f"{folder}: {len(found['HR'])} HR and {len(found['LR'])} LR files, where {name} has "
                             f"{count} of each; give the unpacked SelfExSR download (its data/ folder inside)")
        for kind, files in found.items():
            pairs += [(file, out / "x4" / name / kind.lower() / file.name.replace(f"_SRF_4_{kind}", ""))
                      for file in files]
    copy_all(pairs)
    log.info("wrote %s", ", ".join(f"{out / 'x4' / name} ({count} pairs)" for name, count in BENCHMARKS.items()))


def lay_out_training(kind: str, source: Path, out: Path) -> None:
    """The files of training set `kind` (see TRAINING) in `source` as `out/<set>/hr/`."""
    name, pattern, count = TRAINING[kind]
    files = sorted(source.glob(pattern))
    if len(files) != count:
        raise ValueError(f"{source}: {len(files)} files {pattern}, where {name} has {count}")
    copy_all([(file, out / name / "hr" / file.name) for file in files])
    log.info("wrote %s (%d images)", out / name / "hr", count)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-datasets")
    parser.add_argument("set", choices=["benchmarks", *TRAINING], help="which data set the source folder holds")
    parser.add_argument("source", type=Path, help="the folder of the unpacked download (see above)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to lay it out (default: data/benchmarks for benchmarks, else data/datasets)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        raise ValueError(f"{args.source}: not a folder")
    if args.set == "benchmarks":
        lay_out_benchmarks(args.source, args.out or Path("data/benchmarks"))
    else:
        lay_out_training(args.set, args.source, args.out or Path("data/datasets"))



def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
