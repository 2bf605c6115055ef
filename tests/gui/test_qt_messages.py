"""Qt's image-decoder complaints stay off the terminal; every other Qt message still reaches it."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QLoggingCategory, qCWarning, qInstallMessageHandler, qWarning  # noqa: E402

from iamnn_studio.gui.qt_messages import install_message_filter, is_image_decoder_noise  # noqa: E402

pytestmark = pytest.mark.gui


def test_decoder_messages_are_recognised_and_others_are_not():
    assert is_image_decoder_noise("qt.gui.imageio", "Rejecting image as it exceeds the allocation limit")
    assert is_image_decoder_noise("default", "libpng error: Read Error")
    assert not is_image_decoder_noise("default", "QPainter::begin: Paint device returned engine == 0")
    assert not is_image_decoder_noise("qt.qpa.xcb", "could not connect to display")


def send_messages() -> None:
    qCWarning(QLoggingCategory("qt.gui.imageio"), "Rejecting image as it exceeds the current allocation limit")
    qWarning("libpng error: Read Error")
    qWarning("a message users should still see")


def test_filter_drops_image_io_messages_and_passes_the_rest_to_the_previous_handler(qtlog):
    previous = install_message_filter()  # pytest-qt's recorder is the previous handler here
    try:
        send_messages()
    finally:
        qInstallMessageHandler(previous)
    assert [record.message for record in qtlog.records] == ["a message users should still see"]


@pytest.mark.qt_no_exception_capture
@pytest.mark.no_qt_log
def test_without_a_previous_handler_the_rest_goes_to_stderr(capfd):
    qInstallMessageHandler(None)
    previous = install_message_filter()
    try:
        send_messages()
        _, err = capfd.readouterr()
    finally:
        qInstallMessageHandler(previous)
    assert "allocation limit" not in err and "libpng" not in err
    assert "a message users should still see" in err
