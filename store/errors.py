class StoreError(Exception):
    """A problem with the results database; the message names it and the fix. The CLI prints it as one line."""
