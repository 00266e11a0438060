"""es-neural."""
