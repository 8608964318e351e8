{{/*
outbox-relay.sidecar: the relay container for an application's own pods.

The application's chart lists outbox-relay as a dependency (with mode: sidecar in its values)
and includes this template in its pod spec's containers:

  containers:
    - name: app
      ...
    {{- include "outbox-relay.sidecar" (dict "root" $) | nindent 4 }}

The dict takes:
  root    the application chart's root context ($), required
  name    the dependency's name or alias, default "outbox-relay"
  values  values merged over the subchart's, optional (e.g. other resources per Deployment)

The container reads the same values (image, config, secrets, ports, probes, resources,
securityContext, extraEnv, extraEnvFrom, extraVolumeMounts) as the subchart, which also renders
the Secret when it creates one; its settings are rendered as env values, so a config change
changes the pod spec and restarts the pods. outbox-relay.sidecar.annotations adds a checksum of
the chart-created Secret; outbox-relay.sidecar.volumes adds extraVolumes to the pod.
*/}}
{{- define "outbox-relay.sidecar" -}}
{{- include "outbox-relay.container" (dict "ctx" (include "outbox-relay.sidecar.context" . | fromJson) "inline" true) }}
{{- end }}

{{/*
outbox-relay.sidecar.annotations: pod annotations for the application's pod template, so its
pods restart when the Secret the chart creates changes. Takes the same dict. Renders nothing
with existingSecret.

  annotations:
    {{- include "outbox-relay.sidecar.annotations" (dict "root" $) | nindent 8 }}
*/}}
{{- define "outbox-relay.sidecar.annotations" -}}
{{- $ctx := include "outbox-relay.sidecar.context" . | fromJson }}
{{- if not $ctx.Values.existingSecret -}}
checksum/outbox-relay-secret: {{ include "outbox-relay.secretData" $ctx | sha256sum }}
{{- end }}
{{- end }}

{{/*
outbox-relay.sidecar.volumes: the relay's extraVolumes, as items of your pod spec's volumes
list (nothing without them). Takes the same dict. List your application's own volumes before
it:

  volumes:
    - name: app-data
      emptyDir: {}
    {{- include "outbox-relay.sidecar.volumes" (dict "root" $) | nindent 4 }}
*/}}
{{- define "outbox-relay.sidecar.volumes" -}}
{{- $ctx := include "outbox-relay.sidecar.context" . | fromJson }}
{{- with $ctx.Values.extraVolumes }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The subchart's context, as JSON (include can only return a string): the values, release and
chart metadata that the dependency itself renders with, so that names (the Secret's) and the
image tag (its appVersion) agree with what the subchart creates.
*/}}
{{- define "outbox-relay.sidecar.context" -}}
{{- if not (and (kindIs "map" .) (hasKey . "root")) }}
{{- fail "outbox-relay.sidecar: pass a dict with the root context: (dict \"root\" $)" }}
{{- end }}
{{- $name := default "outbox-relay" .name }}
{{- $sub := index (.root.Subcharts | default dict) $name }}
{{- if not $sub }}
{{- fail (printf "outbox-relay.sidecar: the chart has no dependency named %q; add outbox-relay to Chart.yaml's dependencies (and pass \"name\" if you gave it an alias)" $name) }}
{{- end }}
{{- $values := deepCopy $sub.Values }}
{{- with .values }}
{{- $values = mustMergeOverwrite $values (deepCopy .) }}
{{- end }}
{{- if ne $values.mode "sidecar" }}
{{- fail (printf "outbox-relay.sidecar: set %s.mode to sidecar in the values, or the subchart also runs its own Deployment" $name) }}
{{- end }}
{{- $chart := dict "Name" $sub.Chart.Name "Version" $sub.Chart.Version "AppVersion" $sub.Chart.AppVersion }}
{{- toJson (dict "Values" $values "Release" .root.Release "Chart" $chart) }}
{{- end }}
