"""The one error type a user can cause. The CLI prints its message on one line and exits 2."""


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and how to fix it."""
