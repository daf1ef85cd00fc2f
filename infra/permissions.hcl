# What every Lifeboat identity calls on Google Cloud, the IAM permission
# each call needs, and the role Terraform grants that holds it. Checked by
# tests/tests/permissions.rs against infra/*.tf (see docs/permissions.md):
# a call whose role is not granted to its account there, a role that does
# not hold the call's permission, or a grant that no call here explains,
# fails the test. Not a Terraform file (Terraform reads *.tf only).
#
# service "NAME": one identity.
#   account: how infra/*.tf names it in a grant's member (a service
#            account resource, or the local holding a service agent).
#   call:    one Google API method it calls (or Google calls as it):
#     method     the REST method (service.resource.method);
#     code       where the call is made;
#     permission the IAM permission the method needs;
#     role       the role holding it: roles/... (its permissions in a
#                `role` block below) or a custom role resource of
#                infra/*.tf (its permissions read from there);
#     grant      the Terraform resource type granting the role (project,
#                bucket, topic...: the scope it is granted on).
#
# role "roles/NAME": the permissions of a predefined role that the calls
# rely on (a subset), from Google's IAM roles and permissions reference
# (source).

role "roles/datastore.user" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/datastore"
  permissions = ["datastore.entities.create", "datastore.entities.delete", "datastore.entities.get", "datastore.entities.list", "datastore.entities.update"]
}

role "roles/datastore.viewer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/datastore"
  permissions = ["datastore.entities.get", "datastore.entities.list"]
}

role "roles/storage.objectViewer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/storage"
  permissions = ["storage.objects.get", "storage.objects.list"]
}

role "roles/storage.objectAdmin" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/storage"
  permissions = ["storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"]
}

role "roles/storage.legacyBucketReader" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/storage"
  permissions = ["storage.buckets.get", "storage.objects.list"]
}

role "roles/storage.legacyBucketWriter" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/storage"
  permissions = ["storage.buckets.get", "storage.objects.create", "storage.objects.delete", "storage.objects.list"]
}

role "roles/bigquery.dataViewer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/bigquery"
  permissions = ["bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.list"]
}

role "roles/bigquery.dataEditor" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/bigquery"
  permissions = ["bigquery.tables.create", "bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.update", "bigquery.tables.updateData"]
}

role "roles/bigquery.metadataViewer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/bigquery"
  permissions = ["bigquery.tables.get", "bigquery.tables.list"]
}

role "roles/bigquery.jobUser" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/bigquery"
  permissions = ["bigquery.jobs.create"]
}

role "roles/monitoring.viewer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/monitoring"
  permissions = ["monitoring.timeSeries.list"]
}

role "roles/monitoring.metricWriter" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/monitoring"
  permissions = ["monitoring.timeSeries.create"]
}

role "roles/pubsub.publisher" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/pubsub"
  permissions = ["pubsub.topics.publish"]
}

role "roles/pubsub.subscriber" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/pubsub"
  permissions = ["pubsub.subscriptions.consume"]
}

role "roles/secretmanager.secretAccessor" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/secretmanager"
  permissions = ["secretmanager.versions.access"]
}

role "roles/artifactregistry.reader" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/artifactregistry"
  permissions = ["artifactregistry.repositories.downloadArtifacts"]
}

role "roles/artifactregistry.writer" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/artifactregistry"
  permissions = ["artifactregistry.repositories.downloadArtifacts", "artifactregistry.repositories.uploadArtifacts"]
}

role "roles/run.invoker" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/run"
  permissions = ["run.routes.invoke"]
}

role "roles/eventarc.eventReceiver" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/eventarc"
  permissions = ["eventarc.events.receiveEvent"]
}

role "roles/iam.serviceAccountTokenCreator" {
  source      = "https://cloud.google.com/iam/docs/roles-permissions/iam"
  permissions = ["iam.serviceAccounts.getOpenIdToken"]
}

service "model-copy" {
  account = "google_service_account.model_copy"

  call {
    method     = "monitoring.projects.timeSeries.create (parity per standby region after each copy)"
    code       = "functions/model-copy/src/lib.rs (write_parity); shared/src/metrics/monitoring.rs (write)"
    permission = "monitoring.timeSeries.create"
    role       = "roles/monitoring.metricWriter"
    grant      = "google_project_iam_member"
  }

  call {
    method     = "aiplatform.models.listVersions"
    code       = "shared/src/models/vertex.rs (model)"
    permission = "aiplatform.models.list"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.models.copy (reads the source model)"
    code       = "shared/src/models/vertex.rs (start_copy)"
    permission = "aiplatform.models.get"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.models.copy (creates the copy in the target region)"
    code       = "shared/src/models/vertex.rs (start_copy)"
    permission = "aiplatform.models.upload"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.operations.get"
    code       = "shared/src/models/vertex.rs (operation)"
    permission = "aiplatform.operations.get"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.get"
    code       = "shared/src/models/vertex.rs (endpoint)"
    permission = "aiplatform.endpoints.get"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.deployModel"
    code       = "shared/src/models/vertex.rs (start_deploy)"
    permission = "aiplatform.endpoints.deploy"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.undeployModel"
    code       = "shared/src/models/vertex.rs (start_undeploy)"
    permission = "aiplatform.endpoints.undeploy"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.patch (traffic split)"
    code       = "shared/src/models/vertex.rs (set_traffic)"
    permission = "aiplatform.endpoints.update"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "storage.buckets.get"
    code       = "functions/model-copy/src/artifacts.rs (bucket_location)"
    permission = "storage.buckets.get"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "storage.objects.list"
    code       = "functions/model-copy/src/artifacts.rs (list)"
    permission = "storage.objects.list"
    role       = "google_project_iam_custom_role.model_copy"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.get"
    code       = "shared/src/state/firestore.rs (idempotency, lease, parity)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list"
    code       = "shared/src/state/firestore.rs (parity::read)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (replaces a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (deletes a lease or claim)"
    code       = "shared/src/state/firestore.rs (delete)"
    permission = "datastore.entities.delete"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/model_copy.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
  call {
    method     = "Docker registry API: pull from a source repository"
    code       = "functions/model-copy/src/mirror.rs (copy)"
    permission = "artifactregistry.repositories.downloadArtifacts"
    role       = "roles/artifactregistry.reader"
    grant      = "google_artifact_registry_repository_iam_member"
  }
  call {
    method     = "Docker registry API: push to a mirror repository"
    code       = "functions/model-copy/src/mirror.rs (copy)"
    permission = "artifactregistry.repositories.uploadArtifacts"
    role       = "roles/artifactregistry.writer"
    grant      = "google_artifact_registry_repository_iam_member"
  }
}

service "data-sync" {
  account = "google_service_account.data_sync"

  # Bulk copies: one Storage Transfer job per asset and replica region.
  call {
    method     = "storagetransfer.transferJobs.get"
    code       = "shared/src/transfer/storage_transfer.rs (get_job)"
    permission = "storagetransfer.jobs.get"
    role       = "google_project_iam_custom_role.data_sync_transfer"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "storagetransfer.transferJobs.create"
    code       = "shared/src/transfer/storage_transfer.rs (job)"
    permission = "storagetransfer.jobs.create"
    role       = "google_project_iam_custom_role.data_sync_transfer"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "storagetransfer.transferJobs.run"
    code       = "shared/src/transfer/storage_transfer.rs (run)"
    permission = "storagetransfer.jobs.run"
    role       = "google_project_iam_custom_role.data_sync_transfer"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "storagetransfer.transferOperations.get"
    code       = "shared/src/transfer/storage_transfer.rs (get_operation, follow)"
    permission = "storagetransfer.operations.get"
    role       = "google_project_iam_custom_role.data_sync_transfer"
    grant      = "google_project_iam_member"
  }

  call {
    method     = "monitoring.projects.timeSeries.create (RPO exposure at each reconcile)"
    code       = "functions/data-sync/src/lib.rs (record_check); shared/src/metrics/monitoring.rs (write)"
    permission = "monitoring.timeSeries.create"
    role       = "roles/monitoring.metricWriter"
    grant      = "google_project_iam_member"
  }

  call {
    method     = "storage.objects.get (source)"
    code       = "shared/src/storage/gcs.rs (head, get)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.list (source)"
    code       = "shared/src/storage/gcs.rs (list, list_range)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.rewrite (reads the source)"
    code       = "shared/src/storage/gcs.rs (copy)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.rewrite (writes the replica)"
    code       = "shared/src/storage/gcs.rs (copy)"
    permission = "storage.objects.create"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.rewrite (replaces an existing replica)"
    code       = "shared/src/storage/gcs.rs (copy)"
    permission = "storage.objects.delete"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (replica)"
    code       = "shared/src/storage/gcs.rs (head)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.list (replica)"
    code       = "shared/src/storage/gcs.rs (list, list_range)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.delete (replica)"
    code       = "shared/src/storage/gcs.rs (delete)"
    permission = "storage.objects.delete"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "bigquery.tables.get (source)"
    code       = "shared/src/warehouse/bigquery.rs (table)"
    permission = "bigquery.tables.get"
    role       = "roles/bigquery.dataViewer"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.tables.list (source)"
    code       = "shared/src/warehouse/bigquery.rs (list_tables)"
    permission = "bigquery.tables.list"
    role       = "roles/bigquery.dataViewer"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.jobs.query / jobs.insert (reads the source's rows)"
    code       = "shared/src/warehouse/bigquery.rs (row_count, copy_table)"
    permission = "bigquery.tables.getData"
    role       = "roles/bigquery.dataViewer"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.tables.get (replica)"
    code       = "shared/src/warehouse/bigquery.rs (table)"
    permission = "bigquery.tables.get"
    role       = "roles/bigquery.dataEditor"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.jobs.query (counts the replica's rows)"
    code       = "shared/src/warehouse/bigquery.rs (row_count)"
    permission = "bigquery.tables.getData"
    role       = "roles/bigquery.dataEditor"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.jobs.insert (copy job creates the replica table)"
    code       = "shared/src/warehouse/bigquery.rs (copy_table)"
    permission = "bigquery.tables.create"
    role       = "roles/bigquery.dataEditor"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.jobs.insert (copy job truncates the replica table)"
    code       = "shared/src/warehouse/bigquery.rs (copy_table)"
    permission = "bigquery.tables.updateData"
    role       = "roles/bigquery.dataEditor"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "bigquery.jobs.insert, jobs.query (runs the job; jobs.get and jobs.getQueryResults of its own jobs need no more)"
    code       = "shared/src/warehouse/bigquery.rs (row_count, copy_table)"
    permission = "bigquery.jobs.create"
    role       = "roles/bigquery.jobUser"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.get"
    code       = "shared/src/state/firestore.rs (ledger, rpo)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list"
    code       = "shared/src/state/firestore.rs (rpo::read_all)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (replaces a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/data_sync.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

service "checkpoint-fanout" {
  account = "google_service_account.checkpoint_fanout"

  call {
    method     = "storage.objects.list (source)"
    code       = "shared/src/storage/gcs.rs (list)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (source manifests and markers)"
    code       = "shared/src/storage/gcs.rs (get, head)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.rewrite (writes the replica)"
    code       = "shared/src/storage/gcs.rs (copy)"
    permission = "storage.objects.create"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.insert (marker written last)"
    code       = "shared/src/storage/gcs.rs (put)"
    permission = "storage.objects.create"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (replica)"
    code       = "shared/src/storage/gcs.rs (head)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.list (replica, retention)"
    code       = "shared/src/storage/gcs.rs (list)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.delete (retention, replaced replicas)"
    code       = "shared/src/storage/gcs.rs (delete, copy)"
    permission = "storage.objects.delete"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "monitoring.projects.timeSeries.create (replication lag)"
    code       = "shared/src/metrics/monitoring.rs (write)"
    permission = "monitoring.timeSeries.create"
    role       = "roles/monitoring.metricWriter"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.get"
    code       = "shared/src/state/firestore.rs (idempotency, rpo)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list"
    code       = "shared/src/state/firestore.rs (rpo::report)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (replaces a record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (abandons a claim)"
    code       = "shared/src/state/firestore.rs (delete)"
    permission = "datastore.entities.delete"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/checkpoint_fanout.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

service "failover" {
  account = "google_service_account.failover"

  call {
    method     = "monitoring.projects.timeSeries.create (routing weights, incident start to verified)"
    code       = "functions/failover/src/lib.rs (write_routing, verify_move); shared/src/metrics/monitoring.rs (write)"
    permission = "monitoring.timeSeries.create"
    role       = "roles/monitoring.metricWriter"
    grant      = "google_project_iam_member"
  }

  call {
    method     = "aiplatform.endpoints.get"
    code       = "shared/src/models/vertex.rs (endpoint)"
    permission = "aiplatform.endpoints.get"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.models.listVersions"
    code       = "shared/src/models/vertex.rs (model)"
    permission = "aiplatform.models.list"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.deployModel (pilot light; reads the model)"
    code       = "shared/src/models/vertex.rs (start_deploy)"
    permission = "aiplatform.models.get"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.deployModel (pilot light)"
    code       = "shared/src/models/vertex.rs (start_deploy)"
    permission = "aiplatform.endpoints.deploy"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.mutateDeployedModel (warm standby scale-up)"
    code       = "shared/src/models/vertex.rs (start_set_replicas)"
    permission = "aiplatform.endpoints.update"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.operations.get"
    code       = "shared/src/models/vertex.rs (operation)"
    permission = "aiplatform.operations.get"
    role       = "google_project_iam_custom_role.failover"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.get"
    code       = "shared/src/state/firestore.rs (lease, routing, incident records)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list"
    code       = "shared/src/state/firestore.rs (routing::read_all, record::read_all, parity and rpo reports)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a lease or record)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (compare-and-set of a routing table, lease renewal)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (releases a lease)"
    code       = "shared/src/state/firestore.rs (delete)"
    permission = "datastore.entities.delete"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "pubsub.projects.topics.publish (refusals)"
    code       = "shared/src/bus/pubsub.rs (publish)"
    permission = "pubsub.topics.publish"
    role       = "roles/pubsub.publisher"
    grant      = "google_pubsub_topic_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/failover.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

service "gateway" {
  account = "google_service_account.gateway"

  call {
    method     = "aiplatform.endpoints.predict"
    code       = "functions/gateway/src/upstreams.rs (vertex), lib.rs (predict)"
    permission = "aiplatform.endpoints.predict"
    role       = "google_project_iam_custom_role.gateway"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list (routing tables, drill faults, traffic sweep)"
    code       = "shared/src/state/firestore.rs (routing::read_all, fault::active, traffic::flush)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.get (traffic counts)"
    code       = "shared/src/state/firestore.rs (traffic::flush)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a minute of traffic counts)"
    code       = "shared/src/state/firestore.rs (put, traffic::flush)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (adds to a minute of traffic counts)"
    code       = "shared/src/state/firestore.rs (put, traffic::flush)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (deletes traffic counts past retention)"
    code       = "shared/src/state/firestore.rs (delete, traffic::flush)"
    permission = "datastore.entities.delete"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/gateway.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

service "drill" {
  account = "google_service_account.drill"

  call {
    method     = "monitoring.projects.timeSeries.create (RTO a drill measured)"
    code       = "functions/drill/src/runner.rs (finish); shared/src/metrics/monitoring.rs (write)"
    permission = "monitoring.timeSeries.create"
    role       = "roles/monitoring.metricWriter"
    grant      = "google_project_iam_member"
  }

  # replication-isolation: the replication lag checkpoint-fanout writes,
  # read back to see it pass the RPO target.
  call {
    method     = "monitoring.projects.timeSeries.list (replication lag)"
    code       = "shared/src/metrics/monitoring.rs (latest)"
    permission = "monitoring.timeSeries.list"
    role       = "roles/monitoring.viewer"
    grant      = "google_project_iam_member"
  }

  # pilot-light-deploy: deploy the copied model on the pilot-light
  # endpoint, follow the operation, undeploy what it deployed.
  call {
    method     = "aiplatform.endpoints.get"
    code       = "shared/src/models/vertex.rs (endpoint)"
    permission = "aiplatform.endpoints.get"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.models.listVersions"
    code       = "shared/src/models/vertex.rs (model)"
    permission = "aiplatform.models.list"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.deployModel (pilot light; reads the model)"
    code       = "shared/src/models/vertex.rs (start_deploy)"
    permission = "aiplatform.models.get"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.deployModel (pilot light)"
    code       = "shared/src/models/vertex.rs (start_deploy)"
    permission = "aiplatform.endpoints.deploy"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.endpoints.undeployModel (what the drill deployed)"
    code       = "shared/src/models/vertex.rs (start_undeploy)"
    permission = "aiplatform.endpoints.undeploy"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "aiplatform.operations.get"
    code       = "shared/src/models/vertex.rs (operation)"
    permission = "aiplatform.operations.get"
    role       = "google_project_iam_custom_role.drill"
    grant      = "google_project_iam_member"
  }
  # Runs, faults, leases, replication pauses; routing, incident, parity,
  # RPO and gateway traffic records read; the pre-drill routing written back.
  call {
    method     = "firestore.documents.get"
    code       = "shared/src/state/firestore.rs (drill runs, faults, leases, routing, incidents)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list"
    code       = "shared/src/state/firestore.rs (drill runs, routing::read_all, parity, rpo and gateway traffic reports)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (creates a run, fault, pause or lease)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.create"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (compare-and-set of a run, the pre-drill routing table restored)"
    code       = "shared/src/state/firestore.rs (put)"
    permission = "datastore.entities.update"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.commit (removes a fault or pause, releases a lease)"
    code       = "shared/src/state/firestore.rs (delete)"
    permission = "datastore.entities.delete"
    role       = "roles/datastore.user"
    grant      = "google_project_iam_member"
  }
  # The reports bucket.
  call {
    method     = "storage.objects.insert (a run's report)"
    code       = "shared/src/storage/gcs.rs (put)"
    permission = "storage.objects.create"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.insert (replaces the run's own report)"
    code       = "shared/src/storage/gcs.rs (put)"
    permission = "storage.objects.delete"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (GET /runs/RUN/report)"
    code       = "shared/src/storage/gcs.rs (get)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectAdmin"
    grant      = "google_storage_bucket_iam_member"
  }
  # restore: checkpoint and replica buckets and their sources, read only.
  call {
    method     = "storage.objects.list (checkpoints, replica samples, their sources)"
    code       = "shared/src/storage/gcs.rs (list)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (checkpoint shards and manifests, sampled replicas, their sources' CRC32C)"
    code       = "shared/src/storage/gcs.rs (get, head)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "bigquery.tables.get (row counts of source and replica tables, from their metadata; no query job)"
    code       = "shared/src/warehouse/bigquery.rs (table)"
    permission = "bigquery.tables.get"
    role       = "roles/bigquery.metadataViewer"
    grant      = "google_bigquery_dataset_iam_member"
  }
  call {
    method     = "pubsub.projects.topics.publish (dev.lifeboat.drill.started, .finished, .aborted)"
    code       = "shared/src/bus/pubsub.rs (publish)"
    permission = "pubsub.topics.publish"
    role       = "roles/pubsub.publisher"
    grant      = "google_pubsub_topic_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/drill.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

# The identities events and ticks arrive with.
service "model-copy-trigger" {
  account = "google_service_account.model_copy_trigger"

  call {
    method     = "Cloud Run request (Eventarc delivery, Scheduler reconcile)"
    code       = "infra/model_copy.tf"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
  call {
    method     = "Eventarc event receipt"
    code       = "infra/model_copy.tf (google_eventarc_trigger.model_copy)"
    permission = "eventarc.events.receiveEvent"
    role       = "roles/eventarc.eventReceiver"
    grant      = "google_project_iam_member"
  }
}

service "checkpoint-fanout-trigger" {
  account = "google_service_account.checkpoint_fanout_trigger"

  call {
    method     = "Cloud Run request (Eventarc delivery)"
    code       = "infra/checkpoint_fanout.tf"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
  call {
    method     = "Eventarc event receipt"
    code       = "infra/checkpoint_fanout.tf (google_eventarc_trigger.checkpoint_fanout)"
    permission = "eventarc.events.receiveEvent"
    role       = "roles/eventarc.eventReceiver"
    grant      = "google_project_iam_member"
  }
}

service "data-sync-invoker" {
  account = "google_service_account.data_sync_invoker"

  call {
    method     = "Cloud Run request (Eventarc delivery, Scheduler reconcile)"
    code       = "infra/data_sync.tf"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
  call {
    method     = "Eventarc event receipt"
    code       = "infra/data_sync.tf (google_eventarc_trigger.storage, .bigquery)"
    permission = "eventarc.events.receiveEvent"
    role       = "roles/eventarc.eventReceiver"
    grant      = "google_project_iam_member"
  }
}

service "failover-invoker" {
  account = "google_service_account.failover_invoker"

  call {
    method     = "Cloud Run request (Pub/Sub push of incidents, Scheduler failback ticks)"
    code       = "infra/failover.tf"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
}

service "drill-invoker" {
  account = "google_service_account.drill_invoker"

  call {
    method     = "Cloud Run request (Scheduler ticks of the drills)"
    code       = "infra/drill.tf (google_cloud_scheduler_job.drill)"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
}

service "console" {
  account = "google_service_account.console"

  # Every record the page shows, read only.
  call {
    method     = "firestore.documents.get (routing tables, checkpoint RPO, drill runs)"
    code       = "shared/src/state/firestore.rs (get)"
    permission = "datastore.entities.get"
    role       = "roles/datastore.viewer"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "firestore.documents.list (parity, data RPO, routing, incidents, drill runs)"
    code       = "shared/src/state/firestore.rs (list)"
    permission = "datastore.entities.list"
    role       = "roles/datastore.viewer"
    grant      = "google_project_iam_member"
  }
  call {
    method     = "secretmanager.versions.access (Cloud Run mounts the topology)"
    code       = "infra/console.tf (volumes)"
    permission = "secretmanager.versions.access"
    role       = "roles/secretmanager.secretAccessor"
    grant      = "google_secret_manager_secret_iam_member"
  }
}

# Google's service agents, acting for Lifeboat.
service "iap-service-agent" {
  account = "local.iap_service_agent"

  call {
    method     = "Cloud Run request (an operator's request IAP let through to the console)"
    code       = "infra/console.tf (iap_enabled)"
    permission = "run.routes.invoke"
    role       = "roles/run.invoker"
    grant      = "google_cloud_run_v2_service_iam_member"
  }
}

service "pubsub-service-agent" {
  account = "local.pubsub_service_agent"

  call {
    method     = "pubsub.projects.topics.publish (forwards an undeliverable message to a dead-letter topic)"
    code       = "every dead-letter policy in infra/*.tf"
    permission = "pubsub.topics.publish"
    role       = "roles/pubsub.publisher"
    grant      = "google_pubsub_topic_iam_member"
  }
  call {
    method     = "pubsub.projects.subscriptions.acknowledge (removes the dead-lettered message from its subscription)"
    code       = "every dead-letter policy in infra/*.tf"
    permission = "pubsub.subscriptions.consume"
    role       = "roles/pubsub.subscriber"
    grant      = "google_pubsub_subscription_iam_member"
  }
  call {
    method     = "iam.serviceAccounts.getOpenIdToken (the OIDC token of incident pushes)"
    code       = "infra/failover.tf (google_pubsub_subscription.incidents)"
    permission = "iam.serviceAccounts.getOpenIdToken"
    role       = "roles/iam.serviceAccountTokenCreator"
    grant      = "google_service_account_iam_member"
  }
}

service "monitoring-notification-agent" {
  account = "@gcp-sa-monitoring-notification.iam.gserviceaccount.com"

  call {
    method     = "pubsub.projects.topics.publish (incidents to the notification channel's topic)"
    code       = "infra/failover.tf (google_monitoring_notification_channel.incidents)"
    permission = "pubsub.topics.publish"
    role       = "roles/pubsub.publisher"
    grant      = "google_pubsub_topic_iam_member"
  }
}

service "storage-service-agent" {
  account = "data.google_storage_project_service_account.gcs.email_address"

  call {
    method     = "pubsub.projects.topics.publish (object events for Eventarc's storage triggers)"
    code       = "infra/main.tf (gcs_publishes_events)"
    permission = "pubsub.topics.publish"
    role       = "roles/pubsub.publisher"
    grant      = "google_project_iam_member"
  }
}

service "storage-transfer-service-agent" {
  account = "data.google_storage_transfer_project_service_account.sts.email"

  # The copies of data-sync's bulk transfer jobs (infra/data_sync.tf).
  call {
    method     = "storage.buckets.get (the source's location)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.buckets.get"
    role       = "roles/storage.legacyBucketReader"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.list (source)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.list"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (reads the source)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.buckets.get (the replica's location)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.buckets.get"
    role       = "roles/storage.legacyBucketWriter"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.list (replica: what is already there)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.list"
    role       = "roles/storage.legacyBucketWriter"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.insert (writes the replica)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.create"
    role       = "roles/storage.legacyBucketWriter"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.insert (overwrites a replica that differs)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.delete"
    role       = "roles/storage.legacyBucketWriter"
    grant      = "google_storage_bucket_iam_member"
  }
  call {
    method     = "storage.objects.get (compares a replica with its source: overwrite when different)"
    code       = "shared/src/transfer/storage_transfer.rs (a run of the job)"
    permission = "storage.objects.get"
    role       = "roles/storage.objectViewer"
    grant      = "google_storage_bucket_iam_member"
  }
}
