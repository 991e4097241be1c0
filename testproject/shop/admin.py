from __future__ import annotations

from django.contrib import admin

from .models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "price", "stock")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}  # noqa: RUF012 (Django reads it, never mutates)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "quantity", "email", "created_at")
    list_select_related = ("product",)
    list_filter = ("created_at",)
    search_fields = ("email", "product__name")
    raw_id_fields = ("product",)
