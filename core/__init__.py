"""The ground floor: settings, errors and the small shared types every layer uses.

It imports nothing of this project, and every other package may import it
(ui/ excepted: the UI talks HTTP only and keeps its own small settings).
"""
