{{/* Chart name, truncated to a DNS label. */}}
{{- define "fitsched.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name; component objects append -agent, -scorer, -scheduler. */}}
{{- define "fitsched.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fitsched.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "scorer"). */}}
{{- define "fitsched.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fitsched.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "fitsched.labels" -}}
helm.sh/chart: {{ include "fitsched.chart" .root }}
{{ include "fitsched.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: fitsched
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An image reference: (dict "image" .Values.agent.image "root" $); tag defaults to appVersion. */}}
{{- define "fitsched.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{/*
The upstream kube-scheduler of the cluster's own version: the server's gitVersion
without a vendor suffix (v1.30.4-eks-a737599 -> v1.30.4).
*/}}
{{- define "fitsched.schedulerImage" -}}
{{- $tag := .Values.scheduler.image.tag }}
{{- if not $tag }}
{{- $tag = regexFind "^v?[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version }}
{{- if not (hasPrefix "v" $tag) }}{{ $tag = printf "v%s" $tag }}{{ end }}
{{- end }}
{{- printf "%s:%s" .Values.scheduler.image.repository $tag }}
{{- end }}

{{- define "fitsched.scorerName" -}}
{{- printf "%s-scorer" (include "fitsched.fullname" .) }}
{{- end }}

{{- define "fitsched.schedulerFullname" -}}
{{- printf "%s-scheduler" (include "fitsched.fullname" .) }}
{{- end }}

{{- define "fitsched.leaseName" -}}
{{- .Values.scheduler.leaderElection.leaseName | default (include "fitsched.schedulerFullname" .) }}
{{- end }}

{{/* The scorer's gRPC URL as agents and the shim dial it. */}}
{{- define "fitsched.scorerURL" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled }}
{{- if .Values.scorer.address }}
{{- printf "%s://%s" $scheme .Values.scorer.address }}
{{- else }}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "fitsched.scorerName" .) .Release.Namespace (int .Values.scorer.grpcPort) }}
{{- end }}
{{- end }}

{{/*
With scorer.address, the name the scorer's certificate carries (the Service's, as the
documented certificate names it) differs from the address dialled: agents and the shim
check it instead.
*/}}
{{- define "fitsched.scorerTLSDomain" -}}
{{- if .Values.scorer.address }}
{{- printf "%s.%s.svc" (include "fitsched.scorerName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "fitsched.ingestTokenSecret" -}}
{{- .Values.ingestToken.existingSecret | default (printf "%s-ingest-token" (include "fitsched.fullname" .)) }}
{{- end }}

{{- define "fitsched.modelConfigMap" -}}
{{- .Values.scorer.model.existingConfigMap | default (printf "%s-model" (include "fitsched.fullname" .)) }}
{{- end }}

{{- define "fitsched.modelEnabled" -}}
{{- if or .Values.scorer.model.existingConfigMap .Values.scorer.model.onnxBase64 }}true{{ end }}
{{- end }}

{{/*
A duration in milliseconds. values.schema.json admits one integer and one unit
(ms, s, m, h), which is what this understands.
*/}}
{{- define "fitsched.durationMs" -}}
{{- $n := regexFind "^[0-9]+" . | int64 }}
{{- $unit := trimPrefix (toString $n) . }}
{{- $scale := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit | default 0 }}
{{- mul $n $scale }}
{{- end }}

{{/* Pod-level security context of every unprivileged pod. */}}
{{- define "fitsched.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context of every unprivileged container. */}}
{{- define "fitsched.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Checks across values that values.schema.json cannot express. Included by every
workload template, so a bad combination fails the render with a message.
*/}}
{{- define "fitsched.validate" -}}
{{- $timeout := include "fitsched.durationMs" .Values.extender.httpTimeout | int64 }}
{{- $deadline := include "fitsched.durationMs" .Values.shim.deadline | int64 }}
{{- $bindDeadline := include "fitsched.durationMs" .Values.shim.bindDeadline | int64 }}
{{- if gt (mul $deadline 2) $timeout }}
{{- fail (printf "shim.deadline (%s) must be at most half of extender.httpTimeout (%s), so the shim's neutral answer reaches kube-scheduler before it gives up" .Values.shim.deadline .Values.extender.httpTimeout) }}
{{- end }}
{{- if and .Values.extender.bindVerb (gt (add $bindDeadline 500) $timeout) }}
{{- fail (printf "shim.bindDeadline (%s) must be at least 500ms below extender.httpTimeout (%s) when extender.bindVerb is set, so the shim's answer reaches kube-scheduler before it stops waiting and binds the pod itself" .Values.shim.bindDeadline .Values.extender.httpTimeout) }}
{{- end }}
{{- if and .Values.extender.prioritizeVerb (lt (int64 .Values.extender.weight) 1) }}
{{- fail "extender.weight must be a positive integer when extender.prioritizeVerb is set" }}
{{- end }}
{{- if not (or .Values.auth.tokenReview .Values.auth.allowUnauthenticated) }}
{{- fail "the scorer would let no one in: set auth.tokenReview (the default), or auth.allowUnauthenticated to serve anyone who reaches it" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.secretName must name a Secret with tls.crt, tls.key and ca.crt when tls.enabled is true" }}
{{- end }}
{{- if and .Values.scorer.model.existingConfigMap .Values.scorer.model.onnxBase64 }}
{{- fail "set one of scorer.model.existingConfigMap and scorer.model.onnxBase64, not both" }}
{{- end }}
{{- if and .Values.scheduler.enabled (gt (int .Values.scheduler.replicas) 1) (not .Values.scheduler.leaderElection.enabled) }}
{{- fail "scheduler.replicas above 1 needs scheduler.leaderElection.enabled: two active schedulers of one profile would place the same pods" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.agent.enabled .Values.agent.hostNetwork (not .Values.networkPolicy.extraScorerIngressFrom) }}
{{- fail "agent.hostNetwork: true sends windows from the nodes' addresses, which a pod selector cannot match: list the nodes (an ipBlock) in networkPolicy.extraScorerIngressFrom, or set networkPolicy.enabled: false" }}
{{- end }}
{{- end }}

{{/*
The second scheduler's KubeSchedulerConfiguration: by default in-cluster credentials, its
own profiles and Lease, and the shim beside it as the extender (extenders serve every
profile). templates/policy.yaml prints the same document for a kube-scheduler of an
operator's own (its kubeconfig, Lease and shim URL from values).
*/}}
{{- define "fitsched.schedulerConfig" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  {{- with .Values.scheduler.clientConnection.kubeconfig }}
  kubeconfig: {{ . | quote }}
  {{- end }}
  qps: {{ .Values.scheduler.clientConnection.qps | int64 }}
  burst: {{ .Values.scheduler.clientConnection.burst | int64 }}
leaderElection:
  leaderElect: {{ .Values.scheduler.leaderElection.enabled }}
{{- if .Values.scheduler.leaderElection.enabled }}
  resourceLock: leases
  resourceName: {{ include "fitsched.leaseName" . }}
  resourceNamespace: {{ .Values.scheduler.leaderElection.leaseNamespace | default .Release.Namespace }}
{{- end }}
profiles:
{{- $packPercentage := .Values.scheduler.packPercentageOfNodesToScore }}
{{- range include "fitsched.profiles" . | fromJsonArray }}
  {{- include "fitsched.profile" (merge . (dict "packPercentage" $packPercentage)) | nindent 2 }}
{{- end }}
extenders:
  {{- include "fitsched.extender" . | nindent 2 }}
{{- end }}

{{/*
The scheduler's profiles, a JSON list of {name, strategy}: scheduler.name with
scorer.defaultStrategy, then, with scheduler.strategyProfiles, <name>-<strategy> for each
strategy. The shim gets the same list as --profile-strategy=<name>=<strategy>.
*/}}
{{- define "fitsched.profiles" -}}
{{- $name := .Values.scheduler.name }}
{{- $out := list (dict "name" $name "strategy" .Values.scorer.defaultStrategy) }}
{{- if .Values.scheduler.strategyProfiles }}
{{- range list "spread" "pack" "balanced" }}
{{- $out = append $out (dict "name" (printf "%s-%s" $name .) "strategy" .) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
One KubeSchedulerProfile: (dict "name" "fitsched-pack" "strategy" "pack" "packPercentage" 100). The one place
that owns each strategy's plugin settings.
balanced keeps kube-scheduler's defaults: its system default topology spread already
spreads a workload's pods over hostnames and zones.
*/}}
{{- define "fitsched.profile" -}}
- schedulerName: {{ .name }}
{{- if eq .strategy "spread" }}
  plugins:
    score:
      enabled:
        # One replica per node while any candidate holds none: 100 x 10 outvotes every other
        # score (the extender's 10 x 5 x 10 included). kube-scheduler's cache counts the
        # replicas it has just assumed, which no extender sees before their binds.
        - name: PodTopologySpread
          weight: 10
  pluginConfig:
    # Hostnames only: a zone constraint in the same score would let a node already holding
    # a replica win over an empty node in a fuller zone. Zones are the extender's term.
    - name: PodTopologySpread
      args:
        defaultingType: List
        defaultConstraints:
          - maxSkew: 1
            topologyKey: kubernetes.io/hostname
            whenUnsatisfiable: ScheduleAnyway
{{- end }}
{{- if eq .strategy "pack" }}
  # Every feasible node a candidate (at 100), so the node pack fills is never left out.
  percentageOfNodesToScore: {{ .packPercentage | int64 }}
  plugins:
    score:
      disabled:
        # It prefers nodes with even CPU and memory shares, not full ones.
        - name: NodeResourcesBalancedAllocation
  pluginConfig:
    # Fuller nodes score higher, as under pack (the default LeastAllocated outvotes it).
    - name: NodeResourcesFit
      args:
        scoringStrategy:
          type: MostAllocated
          resources:
            - name: cpu
              weight: 1
            - name: memory
              weight: 1
    # No default constraints: the system defaults spread a workload's pods over nodes and zones.
    - name: PodTopologySpread
      args:
        defaultingType: List
{{- end }}
{{- end }}

{{/*
The extender's filterVerb, or "" when no scorer filter rule is on: without a rule every
node passes, and the verb would cost an HTTP and a gRPC round trip per pod for nothing.
*/}}
{{- define "fitsched.filterVerb" -}}
{{- $f := .Values.scorer.filter }}
{{- if or (not (kindIs "invalid" $f.minFitness)) (not (kindIs "invalid" $f.maxPsiMemoryFull)) }}
{{- .Values.extender.filterVerb }}
{{- end }}
{{- end }}

{{/* The extender entry: the shim sidecar on loopback, verbs and knobs from .Values.extender. */}}
{{- define "fitsched.extender" -}}
{{- $e := .Values.extender -}}
- urlPrefix: {{ .Values.extender.urlPrefix | default (printf "http://127.0.0.1:%d" (int .Values.shim.port)) | trimSuffix "/" }}
{{- with include "fitsched.filterVerb" . }}
  filterVerb: {{ . }}
{{- end }}
{{- with $e.prioritizeVerb }}
  prioritizeVerb: {{ . }}
{{- end }}
{{- with $e.bindVerb }}
  bindVerb: {{ . }}
{{- end }}
  weight: {{ $e.weight | int64 }}
  nodeCacheCapable: {{ $e.nodeCacheCapable }}
  ignorable: {{ $e.ignorable }}
  httpTimeout: {{ $e.httpTimeout }}
{{- end }}

{{/*
The shim container beside kube-scheduler: (dict "root" $ "sidecar" true) renders it as a
native sidecar (an init container with restartPolicy Always, Kubernetes 1.29+).
*/}}
{{- define "fitsched.shimContainer" -}}
- name: shim
{{- if .sidecar }}
  # A native sidecar: started, and with exposeMetrics answering /health, before
  # kube-scheduler starts, so no pod is scheduled while the extender cannot answer.
  restartPolicy: Always
{{- end }}
  image: {{ include "fitsched.image" (dict "image" .root.Values.shim.image "root" .root) }}
  imagePullPolicy: {{ .root.Values.shim.image.pullPolicy }}
  args:
    # Loopback: only the kube-scheduler beside it can call the verbs.
    - --listen=127.0.0.1:{{ .root.Values.shim.port }}
    - --metrics-listen={{ ternary "0.0.0.0" "127.0.0.1" .root.Values.shim.exposeMetrics }}:{{ .root.Values.shim.metricsPort }}
    - --scorer={{ include "fitsched.scorerURL" .root }}
    - --deadline={{ .root.Values.shim.deadline }}
    - --bind-deadline={{ .root.Values.shim.bindDeadline }}
    # Bindings are created with this pod's service account (system:kube-scheduler).
    - --binder=kubernetes
    - --max-body-bytes={{ .root.Values.shim.maxBodyBytes }}
    # A pod without a fitsched.io/strategy annotation gets its profile's strategy.
    {{- range include "fitsched.profiles" .root | fromJsonArray }}
    - --profile-strategy={{ .name }}={{ .strategy }}
    {{- end }}
    {{- if .root.Values.tls.enabled }}
    - --tls-ca=/etc/fitsched/tls/ca.crt
    {{- with include "fitsched.scorerTLSDomain" .root }}
    - --tls-domain={{ . }}
    {{- end }}
    {{- end }}
    {{- if .root.Values.auth.tokenReview }}
    - --token-file=/var/run/secrets/fitsched/token
    {{- end }}
  env:
    - name: RUST_LOG
      value: {{ .root.Values.shim.logLevel | quote }}
  ports:
    - name: extender
      containerPort: {{ .root.Values.shim.port }}
      protocol: TCP
    - name: shim-metrics
      containerPort: {{ .root.Values.shim.metricsPort }}
      protocol: TCP
  {{- if .root.Values.shim.exposeMetrics }}
  {{- if .sidecar }}
  startupProbe:
    httpGet:
      path: /health
      port: shim-metrics
    periodSeconds: 1
    failureThreshold: 60
  {{- end }}
  livenessProbe:
    httpGet:
      path: /health
      port: shim-metrics
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: /health
      port: shim-metrics
    periodSeconds: 5
  {{- end }}
  resources:
    {{- toYaml .root.Values.shim.resources | nindent 4 }}
  securityContext:
    {{- include "fitsched.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if .root.Values.tls.enabled }}
    - name: scorer-ca
      mountPath: /etc/fitsched/tls
      readOnly: true
    {{- end }}
    {{- if .root.Values.auth.tokenReview }}
    - name: scorer-token
      mountPath: /var/run/secrets/fitsched
      readOnly: true
    {{- end }}
{{- end }}
