"""The errors a user can fix (bad params, a bad archive, a failed download): stages print them as
one line, with no traceback. Kept apart so that every stage can catch them without importing the
code that raises them (and so without depending on it in dvc.yaml)."""


class BnlabError(Exception):
    """Base of every error whose message alone tells the user what is wrong and how to fix it."""
