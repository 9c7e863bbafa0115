"""Simulated shop users: Indian names, e-mails and cities from a seeded Faker (locale en_IN)."""

from __future__ import annotations

import re
from datetime import date

from shopflow.contracts import User
from shopflow.extras import require_module

_NOT_EMAIL_SAFE = re.compile(r"[^a-z0-9]+")


def user_id(number: int) -> str:
    """The shop's user id for a user number, e.g. `u-000123`."""
    return f"u-{number:06d}"


class PeopleFactory:
    """Makes users and renames them, deterministically for a seed."""

    def __init__(self, seed: int) -> None:
        require_module("faker")  # the `local` extra: the simulator is a demo and test tool
        from faker import Faker

        self._faker = Faker("en_IN")
        self._faker.seed_instance(seed)
        self._next_number = 1

    def new_user(self, signup_date: date) -> User:
        """A new user with the next id."""
        first = self._faker.first_name()
        last = self._faker.last_name()
        number = self._next_number
        self._next_number += 1
        local_part = _NOT_EMAIL_SAFE.sub(".", f"{first}.{last}".lower()).strip(".")
        return User(
            user_id=user_id(number),
            user_name=f"{first} {last}",
            email=f"{local_part}{number}@{self._faker.free_email_domain()}",
            city=self._faker.city(),
            date=signup_date,
        )

    def renamed(self, user: User) -> User:
        """A new version of `user` with a changed surname (as after a marriage); the id stays."""
        first = user.user_name.split(" ", 1)[0]
        current_last = user.user_name.split(" ", 1)[-1]
        last = self._faker.last_name()
        for _ in range(5):
            if last != current_last:
                break
            last = self._faker.last_name()
        else:
            last = f"{last}-{current_last}"
        return User(
            user_id=user.user_id,
            user_name=f"{first} {last}",
            email=user.email,
            city=user.city,
            date=user.date,
        )
