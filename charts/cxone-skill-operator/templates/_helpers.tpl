{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "cxone-skill-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name when it already holds the chart name. */}}
{{- define "cxone-skill-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cxone-skill-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries besides its selector labels. */}}
{{- define "cxone-skill-operator.baseLabels" -}}
helm.sh/chart: {{ include "cxone-skill-operator.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cxone-skill-operator
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "cxone-skill-operator.labels" -}}
{{ include "cxone-skill-operator.baseLabels" . }}
{{ include "cxone-skill-operator.selectorLabels" . }}
{{- end }}

{{/* Labels of the simulator's objects. */}}
{{- define "cxone-skill-operator.simulatorLabels" -}}
{{ include "cxone-skill-operator.baseLabels" . }}
{{ include "cxone-skill-operator.simulatorSelectorLabels" . }}
{{- end }}

{{/* Labels selecting the operator's pods. */}}
{{- define "cxone-skill-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxone-skill-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "cxone-skill-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxone-skill-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: forced by leaderElection.enabled, else replicaCount > 1. */}}
{{- define "cxone-skill-operator.leaderElect" -}}
{{- if kindIs "bool" .Values.leaderElection.enabled }}
{{- .Values.leaderElection.enabled }}
{{- else }}
{{- gt (int .Values.replicaCount) 1 }}
{{- end }}
{{- end }}

{{/* The operator image reference. */}}
{{- define "cxone-skill-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name and in-cluster URL of the simulator. */}}
{{- define "cxone-skill-operator.simulatorName" -}}
{{- printf "%s-simulator" (include "cxone-skill-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxone-skill-operator.simulatorURL" -}}
{{- printf "http://%s.%s.svc:%d" (include "cxone-skill-operator.simulatorName" .) .Release.Namespace (int .Values.simulator.port) }}
{{- end }}

{{- define "cxone-skill-operator.simulatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "cxone-skill-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: simulator
{{- end }}

{{/* The CXone endpoints the operator may call: operator.allowedEndpoints plus the simulator. */}}
{{- define "cxone-skill-operator.allowedEndpoints" -}}
{{- $endpoints := .Values.operator.allowedEndpoints }}
{{- if .Values.simulator.enabled }}
{{- $endpoints = append $endpoints (include "cxone-skill-operator.simulatorURL" .) }}
{{- end }}
{{- join "," $endpoints }}
{{- end }}

{{/*
Rules the operator needs in every namespace it watches: cluster-wide in a ClusterRole when
watchNamespaces is empty, else in a Role per watched namespace. Each rule says why.
*/}}
{{- define "cxone-skill-operator.jobRules" -}}
# SkillTrainingJobs: read and watched (get, list, watch); the cleanup finalizer is added and
# removed with a JSON patch (patch).
- apiGroups:
    - ai.cxone.io
  resources:
    - skilltrainingjobs
  verbs:
    - get
    - list
    - watch
    - patch
# Status is written by server-side apply on the status subresource (get, patch).
- apiGroups:
    - ai.cxone.io
  resources:
    - skilltrainingjobs/status
  verbs:
    - get
    - patch
# The audit ConfigMap and artifact Secret name the job as controller owner with
# blockOwnerDeletion; clusters enforcing OwnerReferencesPermissionEnforcement require this.
- apiGroups:
    - ai.cxone.io
  resources:
    - skilltrainingjobs/finalizers
  verbs:
    - update
{{- if .Values.artifactSecrets.enabled }}
# Secrets: CXone credentials are read (get); a metadata-only watch maps Secret changes to jobs
# (list, watch); the artifact-URL Secret of a job with spec.artifacts.secretName, owned by the
# job, is written by server-side apply (create, patch; artifactSecrets.enabled is true).
{{- else }}
# Secrets: CXone credentials are read (get); a metadata-only watch maps Secret changes to jobs
# (list, watch). No writes: artifactSecrets.enabled is false, so no artifact-URL Secrets.
{{- end }}
- apiGroups:
    - ""
  resources:
    - secrets
  verbs:
    - get
    - list
    - watch
{{- if .Values.artifactSecrets.enabled }}
    - create
    - patch
{{- end }}
# ConfigMaps: utterance sources are read (get); a metadata-only watch maps changes to jobs
# (list, watch); the immutable audit/report ConfigMap, owned by the job, is created (create).
- apiGroups:
    - ""
  resources:
    - configmaps
  verbs:
    - get
    - list
    - watch
    - create
# Events about jobs (events.k8s.io/v1): created, and patched when a repeat is aggregated.
- apiGroups:
    - events.k8s.io
  resources:
    - events
  verbs:
    - create
    - patch
{{- end }}

{{/* Rules of the leader election Role, in the release namespace. */}}
{{- define "cxone-skill-operator.leaseRules" -}}
# Leader election: the operator's own Lease is read, renewed and taken over (get, update, patch).
- apiGroups:
    - coordination.k8s.io
  resources:
    - leases
  resourceNames:
    - {{ .Values.leaderElection.id | quote }}
  verbs:
    - get
    - update
    - patch
# Leader election: the first replica creates the Lease (create cannot be limited by name).
- apiGroups:
    - coordination.k8s.io
  resources:
    - leases
  verbs:
    - create
{{- end }}

{{/* Hardened pod and container security contexts, shared by the operator and the simulator. */}}
{{- define "cxone-skill-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "cxone-skill-operator.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
