"""Which dropped files go where (gui/file_kinds.py: plain paths, no Qt)."""
from __future__ import annotations

import os

from iamnn_studio.gui.file_kinds import folder_images, sort_dropped


def test_a_folder_stands_for_its_images_in_order_and_the_walk_stops_at_the_limit(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("a/2.png", "a/1.JPG", "b/3.png", "c.txt", ".hidden/4.png", "5.gif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    every, more = folder_images(tmp_path, limit=10)
    assert [p.removeprefix(str(tmp_path) + "/") for p in every] == ["5.gif", "a/1.JPG", "a/2.png", "b/3.png"]
    assert not more
    first, more = folder_images(tmp_path, limit=2)
    assert first == every[:2] and more


def test_dropped_paths_are_sorted_by_what_the_app_does_with_them(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "album").mkdir()
    (tmp_path / "album" / "x.png").write_bytes(b"")
    dropped = sort_dropped([str(tmp_path / p) for p in ("m.ckpt", "run.toml", "notes.txt", "album", "empty")])
    assert dropped.checkpoints == [str(tmp_path / "m.ckpt")] and dropped.configs == [str(tmp_path / "run.toml")]
    # a file of another kind is tried as an image, so the Use tab can say why it cannot be read
    assert dropped.images == [str(tmp_path / "notes.txt"), str(tmp_path / "album" / "x.png")]
    assert dropped.empty_folders == [str(tmp_path / "empty")] and dropped.folders_cut_short == []


def test_a_folder_that_cannot_be_listed_is_named_with_its_reason_not_skipped(tmp_path, monkeypatch):
    """QA: a dropped folder's unreadable subfolder was skipped without a word (the CLI's predict names it)."""
    for folder in ("photos/locked", "photos/open", "only/locked"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "a.png").write_bytes(b"")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 as a user who is not root (the tests run as root, who reads every folder)
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    dropped = sort_dropped([str(tmp_path / "photos"), str(tmp_path / "only"), str(tmp_path / "photos" / "locked")])
    assert dropped.images == [str(tmp_path / "photos" / "open" / "a.png")]
    assert dropped.unreadable_folders == [(str(tmp_path / "photos" / "locked"), "permission denied"),
                                          (str(tmp_path / "only" / "locked"), "permission denied"),
                                          (str(tmp_path / "photos" / "locked"), "permission denied")]
    # a folder whose only content could not be read is not "empty": its images may be in the unreadable part
    assert dropped.empty_folders == []
