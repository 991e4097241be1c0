"""``manage.py seed_demo``: demo catalogue and an ``admin``/``admin`` superuser, idempotent."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from django_pgreplica import use_primary

from ...factories import ProductFactory
from ...models import Product

CATALOGUE = [
    "Espresso Beans",
    "Filter Coffee",
    "Green Tea",
    "Earl Grey",
    "Ceramic Mug",
    "Travel Tumbler",
    "Pour-over Dripper",
    "Paper Filters",
    "Hand Grinder",
    "Milk Frother",
    "Gooseneck Kettle",
    "Cold Brew Jar",
    "Tea Infuser",
    "Honey Jar",
    "Oat Cookies",
    "Dark Chocolate",
    "Almond Biscotti",
    "Coffee Scale",
    "Moka Pot",
    "French Press",
]

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"  # demo only


class Command(BaseCommand):
    help = "Create the demo products and an admin/admin superuser if they are missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-admin", action="store_true", help="Do not create the admin superuser."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # "Only if missing" checks must not read a lagging replica, or a rerun right after a
        # first seed would try to insert the same rows again.
        with use_primary(), transaction.atomic():
            before = Product.objects.count()
            for name in CATALOGUE:
                ProductFactory(name=name)
            created = Product.objects.count() - before
            self.stdout.write(f"products: {created} created, {len(CATALOGUE) - created} present")
            if not options["no_admin"]:
                self._admin()

    def _admin(self) -> None:
        user_model = get_user_model()
        if user_model._default_manager.filter(username=ADMIN_USERNAME).exists():
            self.stdout.write(f"superuser {ADMIN_USERNAME!r}: present")
            return
        user_model._default_manager.create_superuser(  # type: ignore[attr-defined]
            ADMIN_USERNAME, f"{ADMIN_USERNAME}@example.com", ADMIN_PASSWORD
        )
        self.stdout.write(f"superuser {ADMIN_USERNAME!r}: created (password {ADMIN_PASSWORD!r})")
