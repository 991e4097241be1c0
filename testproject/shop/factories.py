"""factory-boy factories, shared by the tests and the ``seed_demo`` command."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils.text import slugify

from .models import Order, Product


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        # Creating an existing slug returns that row: reseeding stays idempotent.
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.LazyAttribute(lambda o: slugify(o.name))
    description = factory.LazyAttribute(lambda o: f"A fine {o.name.lower()}.")
    price = factory.Sequence(lambda n: Decimal(5 + (n * 7) % 95) + Decimal("0.99"))
    stock = 100


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    product = factory.SubFactory(ProductFactory)
    quantity = 1
    email = factory.Sequence(lambda n: f"customer{n}@example.com")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("password")
