{{/*
Names and labels. Every helper here takes a chart context (.Values, .Release, .Chart): the
chart's own, or the subchart context that outbox-relay.sidecar finds for an application chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "outbox-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified name: <release>-<chart>, or the release name alone when it already contains
the chart name. Truncated to 63 characters, the limit of a DNS label.
*/}}
{{- define "outbox-relay.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "outbox-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource but the migration Job's and the test Pod's (componentLabels). */}}
{{- define "outbox-relay.labels" -}}
{{ include "outbox-relay.selectorLabels" . }}
{{ include "outbox-relay.metaLabels" . }}
{{- end }}

{{/*
Labels that select the relay's pods: the Deployment's selector (immutable, so these two stay as
they are), the Service's, the PodDisruptionBudget's and the NetworkPolicy's.
*/}}
{{- define "outbox-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels that do not select anything: chart, version, manager and commonLabels. */}}
{{- define "outbox-relay.metaLabels" -}}
helm.sh/chart: {{ include "outbox-relay.chart" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels of the pods that are not relays, the migration Job's and the test Pod's, and of their
objects. Takes a dict: "ctx" (a chart context) and "component" (migration, test). Their
app.kubernetes.io/name is <name>-<component>, so they never carry all of selectorLabels: the
Service does not send them traffic and the PodDisruptionBudget does not count them. The relay's
pods keep the selector they always had, since a Deployment's selector cannot change on upgrade.
*/}}
{{- define "outbox-relay.componentLabels" -}}
{{ include "outbox-relay.componentSelectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: {{ include "outbox-relay.name" .ctx }}
{{ include "outbox-relay.metaLabels" .ctx }}
{{- end }}

{{/*
The labels that select the pods of componentLabels; takes the same dict. The name is shortened
first, so that the component survives the 63-character limit of a label value.
*/}}
{{- define "outbox-relay.componentSelectorLabels" -}}
{{- $name := include "outbox-relay.name" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-" -}}
app.kubernetes.io/name: {{ printf "%s-%s" $name .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{/* The ServiceAccount of the relay's pods. */}}
{{- define "outbox-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outbox-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference, the only place that builds one. Takes a dict: "image" (an image value with
repository, tag and digest) and "defaultTag" (used when tag is empty). With a digest the
reference is repository@digest and the tag is ignored: the digest alone says which image runs.
*/}}
{{- define "outbox-relay.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{/* The relay's image (relay pods, sidecar, migration Job); the tag defaults to appVersion. */}}
{{- define "outbox-relay.image" -}}
{{- include "outbox-relay.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* The Secret the relay reads: existingSecret, or the one the chart creates. */}}
{{- define "outbox-relay.secretName" -}}
{{- default (include "outbox-relay.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether RELAY_INSECURE_NO_AUTH is set to true in config (bool or string). */}}
{{- define "outbox-relay.insecureNoAuth" -}}
{{- if eq (toString (index .Values.config "RELAY_INSECURE_NO_AUTH" | default false)) "true" }}true{{ end }}
{{- end }}

{{/*
Checks across values that the schema cannot express. Every template includes it, so a bad
combination stops `helm install` and `helm template` with one line that says what to set.
*/}}
{{- define "outbox-relay.validate" -}}
{{- $v := .Values }}
{{- if $v.existingSecret }}
{{- if or (not $v.secretKeys.databaseURL) (not $v.secretKeys.apiToken) }}
{{- fail "outbox-relay: secretKeys.databaseURL and secretKeys.apiToken must name keys of existingSecret" }}
{{- end }}
{{- if and $v.secretKeys.encryptionKeyPrevious (not $v.secretKeys.encryptionKey) }}
{{- fail "outbox-relay: secretKeys.encryptionKeyPrevious is set but secretKeys.encryptionKey is not; the new key goes in RELAY_ENCRYPTION_KEY" }}
{{- end }}
{{- else }}
{{- if not $v.secret.databaseURL }}
{{- fail "outbox-relay: no database URL: set existingSecret (a Secret with the keys database-url and api-token, see secretKeys) or secret.databaseURL and secret.apiToken" }}
{{- end }}
{{- if and (not $v.secret.apiToken) (not (include "outbox-relay.insecureNoAuth" .)) }}
{{- fail "outbox-relay: no API token: set secret.apiToken (or existingSecret); to run the API without auth set config.RELAY_INSECURE_NO_AUTH=true instead" }}
{{- end }}
{{- if and $v.secret.apiToken (include "outbox-relay.insecureNoAuth" .) }}
{{- fail "outbox-relay: config.RELAY_INSECURE_NO_AUTH is true but secret.apiToken is set; remove one of them" }}
{{- end }}
{{- if and $v.secret.encryptionKeyPrevious (not $v.secret.encryptionKey) }}
{{- fail "outbox-relay: secret.encryptionKeyPrevious is set but secret.encryptionKey is not; the new key goes in secret.encryptionKey" }}
{{- end }}
{{- end }}
{{- if and $v.proxy.enabled (or (not $v.proxy.upstreamURL) (not $v.proxy.authURL)) }}
{{- fail "outbox-relay: proxy.enabled needs proxy.upstreamURL (the application, e.g. http://127.0.0.1:3000) and proxy.authURL (its forward-auth endpoint)" }}
{{- end }}
{{- if eq (int $v.containerPorts.api) (int $v.containerPorts.ops) }}
{{- fail "outbox-relay: containerPorts.api and containerPorts.ops must differ" }}
{{- end }}
{{- if and $v.podMonitor.enabled (ne $v.mode "sidecar") }}
{{- fail "outbox-relay: podMonitor is for sidecar mode; in standalone mode use serviceMonitor" }}
{{- end }}
{{- if and $v.podMonitor.enabled (not $v.podMonitor.selectorLabels) }}
{{- fail "outbox-relay: podMonitor.selectorLabels must name labels of your application's pods (the chart does not own them), e.g. app.kubernetes.io/name: shop" }}
{{- end }}
{{- if and $v.networkPolicy.enabled (ne $v.mode "standalone") }}
{{- fail "outbox-relay: networkPolicy is for standalone mode; in sidecar mode the relay runs in your application's pods, so allow its traffic in your application's NetworkPolicy" }}
{{- end }}
{{- end }}

{{/*
A config value as the string envconfig reads: whole numbers without an exponent (YAML numbers
arrive as float64, and 1048576 would otherwise print as 1.048576e+06), booleans as true/false.
*/}}
{{- define "outbox-relay.envValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- printf "%d" (int64 .) }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The non-secret environment as a YAML map of strings: `config`, the listen addresses from
containerPorts, the reverse-proxy settings, and RELAY_AUTO_MIGRATE=false when the migration Job
does the migrating. Rendered into the ConfigMap, or straight into env (sidecar, Job).
*/}}
{{- define "outbox-relay.configData" -}}
{{- $env := dict }}
{{- range $k, $val := .Values.config }}
{{- $_ := set $env $k (include "outbox-relay.envValue" $val) }}
{{- end }}
{{- $_ := set $env "RELAY_LISTEN_ADDR" (printf ":%d" (int .Values.containerPorts.api)) }}
{{- $_ := set $env "RELAY_OPS_ADDR" (printf ":%d" (int .Values.containerPorts.ops)) }}
{{- if and .Values.migrationJob.enabled (not (hasKey .Values.config "RELAY_AUTO_MIGRATE")) }}
{{- $_ := set $env "RELAY_AUTO_MIGRATE" "false" }}
{{- end }}
{{- if .Values.proxy.enabled }}
{{- $_ := set $env "RELAY_UPSTREAM_URL" .Values.proxy.upstreamURL }}
{{- $_ := set $env "RELAY_AUTH_URL" .Values.proxy.authURL }}
{{- $_ := set $env "RELAY_PROXY_PREFIX" .Values.proxy.prefix }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* The non-secret environment as a list of EnvVar, sorted by name. */}}
{{- define "outbox-relay.configEnv" -}}
{{- $env := list }}
{{- range $k, $val := include "outbox-relay.configData" . | fromYaml }}
{{- $env = append $env (dict "name" $k "value" $val) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The secret environment as a list of EnvVar with secretKeyRefs. Takes a dict: "ctx" (a chart
context) and "secretName" (the Secret the chart creates, or the migration Job's copy of it;
ignored with existingSecret).
*/}}
{{- define "outbox-relay.secretEnv" -}}
{{- $v := .ctx.Values }}
{{- $name := .secretName }}
{{- $keys := dict "databaseURL" "database-url" "apiToken" "api-token" "listenDatabaseURL" "" "encryptionKey" "" "encryptionKeyPrevious" "" }}
{{- if $v.existingSecret }}
{{- $name = $v.existingSecret }}
{{- $keys = $v.secretKeys }}
{{- else }}
{{- range $field, $key := dict "listenDatabaseURL" "listen-database-url" "encryptionKey" "encryption-key" "encryptionKeyPrevious" "encryption-key-previous" }}
{{- if index $v.secret $field }}
{{- $_ := set $keys $field $key }}
{{- end }}
{{- end }}
{{- if not $v.secret.apiToken }}
{{- $_ := set $keys "apiToken" "" }}
{{- end }}
{{- end -}}
- name: RELAY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $keys.databaseURL }}
{{- if $keys.apiToken }}
- name: RELAY_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $keys.apiToken }}
{{- else }}
{{- /* Only reached with RELAY_INSECURE_NO_AUTH=true: the relay wants the token set, and empty. */}}
- name: RELAY_API_TOKEN
  value: ""
{{- end }}
{{- range $var, $field := dict "RELAY_LISTEN_DATABASE_URL" "listenDatabaseURL" "RELAY_ENCRYPTION_KEY" "encryptionKey" "RELAY_ENCRYPTION_KEY_PREVIOUS" "encryptionKeyPrevious" }}
{{- with index $keys $field }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The data of the Secret the chart creates (base64), keyed as secretEnv expects. */}}
{{- define "outbox-relay.secretData" -}}
database-url: {{ .Values.secret.databaseURL | b64enc | quote }}
{{- with .Values.secret.apiToken }}
api-token: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secret.listenDatabaseURL }}
listen-database-url: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secret.encryptionKey }}
encryption-key: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.secret.encryptionKeyPrevious }}
encryption-key-previous: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Pod annotations whose change restarts the relay: a checksum of the non-secret environment and,
when the chart creates the Secret, of its data. With existingSecret, restart the pods yourself
(or use a reloader) when the Secret changes.
*/}}
{{- define "outbox-relay.checksums" -}}
checksum/config: {{ include "outbox-relay.configData" . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include "outbox-relay.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The relay container, as one item of a containers list. Takes a dict: "ctx" (a chart context)
and "inline" (true: the non-secret settings as env values instead of envFrom the ConfigMap,
for pods outside this chart's control).
*/}}
{{- define "outbox-relay.container" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values -}}
- name: outbox-relay
  image: {{ include "outbox-relay.image" $ctx }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["serve"]
  ports:
    - name: api
      containerPort: {{ $v.containerPorts.api }}
      protocol: TCP
    - name: ops
      containerPort: {{ $v.containerPorts.ops }}
      protocol: TCP
  {{- /* Of two envFrom sources with one name the later wins: the chart's ConfigMap comes last. */}}
  {{- if or $v.extraEnvFrom (not .inline) }}
  envFrom:
    {{- with $v.extraEnvFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if not .inline }}
    - configMapRef:
        name: {{ include "outbox-relay.fullname" $ctx }}
    {{- end }}
  {{- end }}
  env:
    {{- if .inline }}
    {{- include "outbox-relay.configEnv" $ctx | nindent 4 }}
    {{- end }}
    {{- include "outbox-relay.secretEnv" (dict "ctx" $ctx "secretName" (include "outbox-relay.fullname" $ctx)) | nindent 4 }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.extraVolumeMounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
