"""The console's admin site: Herald's branding, its dashboard and what operators see.

`HeraldAdminConfig` (in INSTALLED_APPS) makes this the default site, so every app's
`@admin.register` lands here and `admin.site` is this instance.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class HeraldAdminSite(admin.AdminSite):
    site_header = "Herald"
    site_title = "Herald console"
    index_title = "Dashboard"
    site_url = None  # no public site: the console is the whole UI


class HeraldAdminConfig(AdminConfig):
    """django.contrib.admin with HeraldAdminSite as the default site (INSTALLED_APPS)."""

    default_site = "core.admin_site.HeraldAdminSite"
