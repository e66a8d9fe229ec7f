import json
import os
import stat

import pytest

from sr_core.files import atomic_write, write_csv, write_json


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"psnr": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write('{"psnr": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"psnr": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind


def test_written_files_get_the_usual_permissions(tmp_path):
    write_csv(tmp_path / "sub" / "rows.csv", [{"a": 1, "b": 2}])
    mode = stat.S_IMODE(os.stat(tmp_path / "sub" / "rows.csv").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert (tmp_path / "sub" / "rows.csv").read_text() == "a,b\n1,2\n"


def test_csv_header_without_rows(tmp_path):
    write_csv(tmp_path / "rejects.csv", [], columns=["name", "reason"])
    assert (tmp_path / "rejects.csv").read_text() == "name,reason\n"
