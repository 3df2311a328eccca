"""The shared core every stage builds on: typed params, atomic writes, the stage runner, user errors,
the on-disk layout and constants, and image reading and colouring. It imports no other cocoseg package."""
