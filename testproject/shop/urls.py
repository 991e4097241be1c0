from __future__ import annotations

from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("products/<slug:slug>/", views.product_detail, name="product-detail"),
    path("orders/<int:pk>/", views.order_detail, name="order-detail"),
    path("api/products/<slug:slug>/", views.api_product, name="api-product"),
    path("api/products/<slug:slug>/orders/", views.api_product_orders, name="api-product-orders"),
    path("api/orders/", views.api_orders, name="api-orders"),
    path("api/orders/<int:pk>/", views.api_order, name="api-order"),
    path("whoami-db/", views.whoami_db, name="whoami-db"),
]
