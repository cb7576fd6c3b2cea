"""PitBox."""
