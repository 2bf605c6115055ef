"""Keep Qt's image-decoder chatter off the terminal.

When the Use tab previews a damaged or oversized image, Qt's decoders print their own complaints
("libpng error: Read Error", "Rejecting image as it exceeds the current allocation limit") on
stderr although the image's card already says what is wrong with it. Those messages are logged at
debug level instead; every other Qt message reaches the terminal as before.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

#: Qt's logging category of image readers, and the prefixes of decoder messages sent without it.
IMAGE_IO_CATEGORY = "qt.gui.imageio"
DECODER_PREFIXES = ("libpng ", "libpng-", "libjpeg", "libtiff", "Corrupt JPEG", "Premature end of JPEG")


def is_image_decoder_noise(category: str | None, message: str) -> bool:
    return category == IMAGE_IO_CATEGORY or message.startswith(DECODER_PREFIXES)


def install_message_filter():
    """Route image-decoder messages to the debug log; pass the rest on (to the previous handler, or
    to stderr formatted as Qt's own handler would). Returns the previous handler."""
    from PySide6.QtCore import qFormatLogMessage, qInstallMessageHandler

    previous = None

    def handler(mode, context, message: str) -> None:
        category = getattr(context, "category", None)
        if is_image_decoder_noise(category, message):
            log.debug("Qt image decoder: %s", message)
            return
        if previous is not None:
            previous(mode, context, message)
            return
        try:
            text = qFormatLogMessage(mode, context, message)
        except Exception:  # never let a log line become an error
            text = message
        print(text, file=sys.stderr, flush=True)

    previous = qInstallMessageHandler(handler)
    return previous
