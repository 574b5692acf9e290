"""Reading an ONNX file: guard.py (a hostile file is refused before any parsing), validate.py
(structure), importer.py (operators into the graph), strip_weights.py (skeletons without weights)."""
