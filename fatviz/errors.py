"""The one exception type for mistakes a user can make."""


class FatvizError(Exception):
    """A user-fixable problem (bad folder, bad value); the message says what to do."""
