from django.urls import URLPattern, re_path

from delivery import views

urlpatterns: list[URLPattern] = [
    re_path(r"^webpush/(?P<name>sw\.js|herald-webpush\.js)$", views.webpush_client_file),
]
