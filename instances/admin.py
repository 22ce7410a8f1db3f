from django.contrib import admin

from .models import Host, Instance, InstanceEvent, Operation


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["__str__"]


@admin.register(InstanceEvent)
class InstanceEventAdmin(admin.ModelAdmin):
    list_display = ["__str__"]
