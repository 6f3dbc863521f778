"""Which new passwords are refused: the guessable ones, not only the short ones.

zxcvbn estimates how many guesses a password takes, against lists of common
passwords, names and words, keyboard patterns, repeats and dates, and against
what the site knows about the person (``user_inputs``).  Length alone let
``password123`` and the account's own address through.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

# zxcvbn's 3 is "safely unguessable" (about 10^8 guesses and more): it refuses
# everything on the common-password lists, with or without digits appended.
MIN_SCORE = 3
# zxcvbn's time grows quickly with length; a longer tail adds nothing to guess.
CHECKED_LENGTH = 100


def account_words(email: str | None, display_name: str | None) -> list[str]:
    """What a guesser knows about the person: the address, its local part, the name."""
    words = []
    if email:
        address = email.strip().lower()
        words += [address, address.partition("@")[0]]
    if display_name:
        words += [display_name.strip(), *display_name.split()]
    return [word for word in words if word]


def password_problem(password: str, user_inputs: list[str]) -> str | None:
    """Why ``password`` is too easy to guess, or None when it is not."""
    checked = password[:CHECKED_LENGTH]
    result = zxcvbn(checked, user_inputs=user_inputs, max_length=CHECKED_LENGTH)
    if result["score"] >= MIN_SCORE:
        return None
    if any(match.get("dictionary_name") == "user_inputs" for match in result["sequence"]):
        reason = "It is built from your email address or name."
    else:
        feedback = result["feedback"]
        reason = feedback["warning"] or "It would be guessed quickly."
        if feedback["suggestions"]:
            reason = f"{reason} {feedback['suggestions'][0]}"
    return f"Choose a password that is harder to guess. {reason}"
