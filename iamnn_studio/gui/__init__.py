"""The desktop face of IamNN Studio (PySide6 + pyqtgraph).

Everything Qt lives here; the engine never imports it. Modules that the first window needs
(app, main_window, style, forms, plots, training_view, system_panel, worker, engine_loader) import
neither torch nor the engine at import time: the engine is loaded once, in the background, by
``engine_loader.EngineLoader`` after the window is shown.
"""
