"""One exception type for every user-facing failure, so the CLI can print it cleanly."""


class SidbenchError(Exception):
    """A problem with the user's input or environment; the message says what was expected."""


class BadImageError(SidbenchError):
    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"cannot read image {path}: {reason} (use --skip-bad to skip and count such files)")


class MissingWeightsError(SidbenchError):
    pass


class StatsMismatchError(SidbenchError):
    pass


class SidbenchWarning(UserWarning):
    """Something that makes a number less trustworthy (also listed in the results' ``warnings``)."""
