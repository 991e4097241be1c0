from __future__ import annotations

from django import forms

from .models import Order

MAX_QUANTITY = 10


class OrderForm(forms.ModelForm):
    quantity = forms.IntegerField(min_value=1, max_value=MAX_QUANTITY, initial=1)

    class Meta:
        model = Order
        fields = ("quantity", "email")
