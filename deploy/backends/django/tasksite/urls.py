from django.urls import path

from tasks import views

urlpatterns = [
    path("healthz", views.healthz),
    path("__stats", views.stats),
    path("api/tasks", views.task_list),
    path("api/tasks/<int:task_id>", views.task_detail),
]

handler404 = views.not_found
