from django.contrib import admin

from .models import Backup, Session


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["__str__"]
