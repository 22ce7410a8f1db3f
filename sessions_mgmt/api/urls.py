from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register("sessions", views.SessionViewSet, basename="session")
router.register("backups", views.BackupViewSet, basename="backup")

urlpatterns = router.urls
