from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False)
router.register(
    r"instances/(?P<instance_pk>[^/]+)/channels", views.ChannelViewSet, basename="channel"
)

urlpatterns = router.urls
