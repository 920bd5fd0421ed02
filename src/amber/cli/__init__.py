"""Command-line entry points: parse, call the engine, print. No logic of their own."""
