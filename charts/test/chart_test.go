package charttest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func values(name string) string { return filepath.Join(chartDir, "ci", name) }

func TestStandaloneDefaults(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("standalone-values.yaml"))
	require.Equal(t, map[string]int{
		"ServiceAccount": 1, "Secret": 1, "ConfigMap": 1, "Service": 1, "Deployment": 1,
		"PodDisruptionBudget": 1, "Pod": 1,
	}, r.kinds())
	requireStandardLabels(t, r)

	dep := get[*appsv1.Deployment](t, r, "Deployment")
	require.Equal(t, "demo-outbox-relay", dep.Name)
	require.Equal(t, int32(2), *dep.Spec.Replicas)
	require.Equal(t, int32(10), *dep.Spec.RevisionHistoryLimit)
	pod := dep.Spec.Template
	require.Subset(t, pod.Labels, dep.Spec.Selector.MatchLabels)
	require.Regexp(t, `^[0-9a-f]{64}$`, pod.Annotations["checksum/config"])
	require.Regexp(t, `^[0-9a-f]{64}$`, pod.Annotations["checksum/secret"])
	require.Equal(t, get[*corev1.ServiceAccount](t, r, "ServiceAccount").Name, pod.Spec.ServiceAccountName)
	require.False(t, *pod.Spec.AutomountServiceAccountToken)
	require.True(t, *pod.Spec.SecurityContext.RunAsNonRoot)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, pod.Spec.SecurityContext.SeccompProfile.Type)

	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]
	require.Equal(t, "ghcr.io/referralloop/outbox-relay:"+chartMeta(t).AppVersion, c.Image)
	require.Equal(t, []string{"serve"}, c.Args)
	requireRelayContainer(t, c)
	require.Equal(t, "50m", c.Resources.Requests.Cpu().String())
	require.Equal(t, "64Mi", c.Resources.Requests.Memory().String())

	cm := get[*corev1.ConfigMap](t, r, "ConfigMap")
	require.Len(t, c.EnvFrom, 1)
	require.Equal(t, cm.Name, c.EnvFrom[0].ConfigMapRef.Name)
	require.Empty(t, pod.Spec.Volumes)
	require.Empty(t, c.VolumeMounts)
	require.Equal(t, map[string]string{"RELAY_LISTEN_ADDR": ":8080", "RELAY_OPS_ADDR": ":9090"}, cm.Data)

	secret := get[*corev1.Secret](t, r, "Secret")
	requireFromSecret(t, c, "RELAY_DATABASE_URL", secret.Name, "database-url")
	requireFromSecret(t, c, "RELAY_API_TOKEN", secret.Name, "api-token")
	require.Nil(t, envVar(c, "RELAY_ENCRYPTION_KEY"))
	require.Equal(t, "postgres://relay:relay@postgres:5432/app?sslmode=disable", string(secret.Data["database-url"]))
	require.Equal(t, "ci-token", string(secret.Data["api-token"]))

	svc := get[*corev1.Service](t, r, "Service")
	require.Subset(t, pod.Labels, svc.Spec.Selector, "the Service selects the pods")
	require.Equal(t, []corev1.ServicePort{
		{Name: "http", Port: 8080, TargetPort: intstr.FromString("api"), Protocol: corev1.ProtocolTCP},
		{Name: "ops", Port: 9090, TargetPort: intstr.FromString("ops"), Protocol: corev1.ProtocolTCP},
	}, svc.Spec.Ports)

	pdb := get[*policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
	require.Equal(t, intstr.FromInt32(1), *pdb.Spec.MinAvailable)
	require.Equal(t, dep.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)

	test := get[*corev1.Pod](t, r, "Pod")
	require.Equal(t, "test", test.Annotations["helm.sh/hook"])
	require.Contains(t, test.Spec.Containers[0].Command, "http://demo-outbox-relay:9090/readyz")
	require.False(t, *test.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation)
}

func TestStandaloneFull(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("full-values.yaml"))
	require.Equal(t, map[string]int{
		"ServiceAccount": 1, "ConfigMap": 1, "Service": 1, "Deployment": 1, "PodDisruptionBudget": 1,
		"Pod": 1, "Job": 1, "ServiceMonitor": 1, "PrometheusRule": 1, "NetworkPolicy": 1,
	}, r.kinds(), "existingSecret: the chart creates no Secret")
	requireStandardLabels(t, r)

	dep := get[*appsv1.Deployment](t, r, "Deployment")
	require.Equal(t, int32(3), *dep.Spec.Replicas)
	require.Equal(t, int32(5), *dep.Spec.RevisionHistoryLimit)
	pod := dep.Spec.Template
	require.Contains(t, pod.Annotations, "checksum/config")
	require.NotContains(t, pod.Annotations, "checksum/secret")
	require.Equal(t, "growth", pod.Annotations["example.com/team"])
	require.Len(t, pod.Spec.TopologySpreadConstraints, 1)

	c := pod.Spec.Containers[0]
	require.Equal(t, "ghcr.io/referralloop/outbox-relay@"+relayDigest, c.Image)
	requireRelayContainer(t, c)
	require.Equal(t, int32(5), c.StartupProbe.PeriodSeconds)
	require.Equal(t, int32(60), c.StartupProbe.FailureThreshold)

	// The CA bundle and the extra envFrom source of full-values.yaml.
	otel := corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "outbox-relay-otel"}}}
	caVolume := corev1.Volume{Name: "ca-bundle", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "corp-ca"}}}}
	caMount := corev1.VolumeMount{Name: "ca-bundle", MountPath: "/etc/outbox-relay/ca", ReadOnly: true}
	require.Equal(t, []corev1.EnvFromSource{
		otel,
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "demo-outbox-relay"}}},
	}, c.EnvFrom, "the chart's ConfigMap comes last, so its settings win")
	require.Equal(t, []corev1.Volume{caVolume}, pod.Spec.Volumes)
	require.Equal(t, []corev1.VolumeMount{caMount}, c.VolumeMounts)
	require.Equal(t, "/etc/outbox-relay/ca", envVar(c, "SSL_CERT_DIR").Value)
	requireFromSecret(t, c, "RELAY_DATABASE_URL", "app-outbox-relay", "DATABASE_URL")
	requireFromSecret(t, c, "RELAY_API_TOKEN", "app-outbox-relay", "API_TOKEN")
	requireFromSecret(t, c, "RELAY_LISTEN_DATABASE_URL", "app-outbox-relay", "LISTEN_DATABASE_URL")
	requireFromSecret(t, c, "RELAY_ENCRYPTION_KEY", "app-outbox-relay", "ENCRYPTION_KEY")
	require.Nil(t, envVar(c, "RELAY_ENCRYPTION_KEY_PREVIOUS"))

	cm := get[*corev1.ConfigMap](t, r, "ConfigMap")
	require.Equal(t, map[string]string{
		"RELAY_LISTEN_ADDR":       ":8080",
		"RELAY_OPS_ADDR":          ":9090",
		"RELAY_AUTO_MIGRATE":      "false", // the Job migrates
		"RELAY_SCHEMA":            "webhooks",
		"RELAY_LOG_LEVEL":         "debug",
		"RELAY_BATCH_SIZE":        "500",
		"RELAY_DB_MAX_CONNS":      "8",
		"RELAY_MAX_PAYLOAD_BYTES": "1048576", // not 1.048576e+06
		"RELAY_RETRY_SCHEDULE":    "30s,5m,1h,6h",
		"RELAY_ALLOW_HTTP":        "true",
		"RELAY_AUTH_CACHE_TTL":    "0",
		"RELAY_CONSOLE_TITLE":     "Acme Waitlist",
	}, cm.Data)

	job := get[*batchv1.Job](t, r, "Job")
	require.Equal(t, "pre-install,pre-upgrade", job.Annotations["helm.sh/hook"])
	require.Equal(t, "before-hook-creation,hook-succeeded", job.Annotations["helm.sh/hook-delete-policy"])
	jc := job.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"migrate"}, jc.Args)
	require.Equal(t, c.Image, jc.Image)
	require.Equal(t, corev1.RestartPolicyNever, job.Spec.Template.Spec.RestartPolicy)
	require.Empty(t, job.Spec.Template.Spec.ServiceAccountName, "the chart's ServiceAccount does not exist yet at pre-install")
	require.Equal(t, "webhooks", envVar(jc, "RELAY_SCHEMA").Value, "the Job gets the settings inline")
	requireFromSecret(t, jc, "RELAY_DATABASE_URL", "app-outbox-relay", "DATABASE_URL")
	requireRestricted(t, jc.SecurityContext)
	require.Equal(t, []corev1.EnvFromSource{otel}, jc.EnvFrom, "the Job gets the settings inline, and the extra sources")
	require.Equal(t, "/etc/outbox-relay/ca", envVar(jc, "SSL_CERT_DIR").Value)
	require.Equal(t, []corev1.Volume{caVolume}, job.Spec.Template.Spec.Volumes, "a database URL may name the CA bundle")
	require.Equal(t, []corev1.VolumeMount{caMount}, jc.VolumeMounts)

	svc := get[*corev1.Service](t, r, "Service")
	sm := get[*unstructured.Unstructured](t, r, "ServiceMonitor")
	require.Equal(t, "monitoring.coreos.com/v1", sm.GetAPIVersion())
	require.Equal(t, "prometheus", sm.GetLabels()["release"])
	matchLabels, _, err := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	require.NoError(t, err)
	require.Subset(t, svc.Labels, matchLabels, "the ServiceMonitor selects the Service")
	endpoints, _, err := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.NoError(t, err)
	require.Len(t, endpoints, 1)
	require.Equal(t, "ops", endpoints[0].(map[string]any)["port"])
	require.Equal(t, "/metrics", endpoints[0].(map[string]any)["path"])

	rule := get[*unstructured.Unstructured](t, r, "PrometheusRule")
	require.Equal(t, "monitoring.coreos.com/v1", rule.GetAPIVersion())
	groups, _, err := unstructured.NestedSlice(rule.Object, "spec", "groups")
	require.NoError(t, err)
	require.Len(t, groups, 1)
	alerts := map[string][2]string{}
	for _, x := range groups[0].(map[string]any)["rules"].([]any) {
		rule := x.(map[string]any)
		alerts[rule["alert"].(string)] = [2]string{rule["expr"].(string), rule["for"].(string)}
	}
	require.Equal(t, map[string][2]string{
		"OutboxRelayBacklogAge": {`max(outbox_relay_outbox_oldest_age_seconds) > 300`, "5m"},
		"OutboxRelayFailureRatio": {
			`sum(rate(outbox_relay_attempts_total{outcome!="2xx"}[5m])) / sum(rate(outbox_relay_attempts_total[5m])) > 0.2`, "15m"},
		"OutboxRelayDisabledSubscriptions": {`max(outbox_relay_subscriptions{status="disabled"}) > 0`, "5m"},
	}, alerts)
}

// Digests for the tests: any 64 hex digits do.
const (
	relayDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	busyboxDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func TestImageReference(t *testing.T) {
	t.Parallel()
	images := func(r release) (relay, job, test string) {
		return get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0].Image,
			get[*batchv1.Job](t, r, "Job").Spec.Template.Spec.Containers[0].Image,
			get[*corev1.Pod](t, r, "Pod").Spec.Containers[0].Image
	}
	base := []string{"-f", values("standalone-values.yaml"), "--set", "migrationJob.enabled=true"}

	relay, job, test := images(render(t, chartDir, base...))
	require.Equal(t, "ghcr.io/referralloop/outbox-relay:"+chartMeta(t).AppVersion, relay, "the image the release workflow publishes, at appVersion")
	require.Equal(t, relay, job)
	require.Equal(t, "busybox:1.37", test)

	relay, job, _ = images(render(t, chartDir, append(base, "--set", "image.tag=9.9.9")...))
	require.Equal(t, "ghcr.io/referralloop/outbox-relay:9.9.9", relay)
	require.Equal(t, relay, job)

	relay, job, test = images(render(t, chartDir, append(base, "--set", "image.tag=9.9.9", "--set", "image.digest="+relayDigest,
		"--set", "tests.image.digest="+busyboxDigest)...))
	require.Equal(t, "ghcr.io/referralloop/outbox-relay@"+relayDigest, relay, "a digest wins over the tag")
	require.Equal(t, relay, job)
	require.Equal(t, "busybox@"+busyboxDigest, test)

	t.Run("Sidecar", func(t *testing.T) {
		t.Parallel()
		r := render(t, wrapperChart(t), "--set", "outbox-relay.image.digest="+relayDigest)
		c := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[1]
		require.Equal(t, "ghcr.io/referralloop/outbox-relay@"+relayDigest, c.Image)
	})
}

// TestOnlyRelayPodsAreSelected: the migration Job's and the test Pod's pods carry labels of
// their own, so the Service sends them no traffic and the PodDisruptionBudget does not count
// them, while the Deployment keeps the selector it always had (it cannot change on upgrade).
func TestOnlyRelayPodsAreSelected(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, r release, name string) {
		t.Helper()
		dep := get[*appsv1.Deployment](t, r, "Deployment")
		require.Equal(t, map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "demo"},
			dep.Spec.Selector.MatchLabels, "a Deployment's selector is immutable: changing it breaks helm upgrade")
		require.Equal(t, "relay", dep.Spec.Template.Labels["app.kubernetes.io/component"])

		selectors := map[string]k8slabels.Selector{}
		for _, m := range r {
			var sel k8slabels.Selector
			var err error
			switch o := m.Object.(type) {
			case *appsv1.Deployment:
				sel, err = metav1.LabelSelectorAsSelector(o.Spec.Selector)
			case *corev1.Service:
				sel = k8slabels.SelectorFromSet(o.Spec.Selector)
			case *policyv1.PodDisruptionBudget:
				sel, err = metav1.LabelSelectorAsSelector(o.Spec.Selector)
			case *networkingv1.NetworkPolicy:
				sel, err = metav1.LabelSelectorAsSelector(&o.Spec.PodSelector)
			default:
				continue
			}
			require.NoError(t, err)
			require.False(t, sel.Empty(), "%s selects every pod", m.Kind)
			selectors[m.Kind] = sel
		}
		require.Len(t, selectors, 4, "Deployment, Service, PodDisruptionBudget and NetworkPolicy")

		others := map[string]map[string]string{
			"migration": get[*batchv1.Job](t, r, "Job").Spec.Template.Labels,
			"test":      get[*corev1.Pod](t, r, "Pod").Labels,
		}
		for kind, sel := range selectors {
			require.True(t, sel.Matches(k8slabels.Set(dep.Spec.Template.Labels)), "%s does not select the relay's pods", kind)
			for component, podLabels := range others {
				require.Equal(t, component, podLabels["app.kubernetes.io/component"])
				require.False(t, sel.Matches(k8slabels.Set(podLabels)), "%s selects the %s pod: %v", kind, component, podLabels)
			}
		}
	}
	check(t, render(t, chartDir, "-f", values("full-values.yaml")), "outbox-relay")

	t.Run("LongName", func(t *testing.T) {
		t.Parallel()
		long := strings.Repeat("r", 63)
		r := render(t, chartDir, "-f", values("full-values.yaml"), "--set", "nameOverride="+long)
		check(t, r, long)
		require.Equal(t, strings.Repeat("r", 53)+"-migration", get[*batchv1.Job](t, r, "Job").Spec.Template.Labels["app.kubernetes.io/name"],
			"the component survives truncation to 63 characters")
	})
}

func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(n int32, proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
		p := intstr.FromInt32(n)
		return networkingv1.NetworkPolicyPort{Port: &p, Protocol: proto}
	}
	nsSelector := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": name}}
	}
	dns := networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{port(53, &udp), port(53, &tcp)}}
	webhooks := networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{port(443, &tcp)}}

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		r := render(t, chartDir, "-f", values("standalone-values.yaml"), "--set", "networkPolicy.enabled=true")
		np := get[*networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		require.Equal(t, get[*appsv1.Deployment](t, r, "Deployment").Spec.Selector.MatchLabels, np.Spec.PodSelector.MatchLabels)
		require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, np.Spec.PolicyTypes)
		require.Equal(t, []networkingv1.NetworkPolicyIngressRule{
			{Ports: []networkingv1.NetworkPolicyPort{port(8080, &tcp)}}, // no from: any source
			{Ports: []networkingv1.NetworkPolicyPort{port(9090, &tcp)}},
		}, np.Spec.Ingress)
		require.Equal(t, []networkingv1.NetworkPolicyEgressRule{
			{Ports: []networkingv1.NetworkPolicyPort{port(5432, &tcp)}}, // no to: any address
			dns,
			webhooks,
		}, np.Spec.Egress)
	})

	t.Run("Full", func(t *testing.T) {
		t.Parallel()
		r := render(t, chartDir, "-f", values("full-values.yaml"))
		np := get[*networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		test := get[*corev1.Pod](t, r, "Pod")
		require.Len(t, np.Spec.Ingress, 2)
		require.Equal(t, networkingv1.NetworkPolicyIngressRule{
			Ports: []networkingv1.NetworkPolicyPort{port(8080, &tcp)},
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSelector("shop")}},
		}, np.Spec.Ingress[0])
		ops := np.Spec.Ingress[1]
		require.Equal(t, []networkingv1.NetworkPolicyPort{port(9090, &tcp)}, ops.Ports)
		require.Len(t, ops.From, 2)
		require.Equal(t, networkingv1.NetworkPolicyPeer{
			NamespaceSelector: nsSelector("monitoring"),
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
		}, ops.From[0])
		testPeer, err := metav1.LabelSelectorAsSelector(ops.From[1].PodSelector)
		require.NoError(t, err)
		require.True(t, testPeer.Matches(k8slabels.Set(test.Labels)), "helm test reaches /readyz")
		require.False(t, testPeer.Matches(k8slabels.Set(get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Labels)))

		require.Equal(t, []networkingv1.NetworkPolicyEgressRule{
			{
				Ports: []networkingv1.NetworkPolicyPort{port(5432, &tcp), port(6432, &tcp)},
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.20.0.0/16"}}},
			},
			{
				Ports: dns.Ports,
				To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: nsSelector("kube-system"),
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
				}},
			},
			webhooks,
			{
				Ports: []networkingv1.NetworkPolicyPort{port(8443, &tcp)},
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24"}}},
			},
		}, np.Spec.Egress)
	})

	t.Run("OnlyTheDatabase", func(t *testing.T) {
		t.Parallel()
		r := render(t, chartDir, "-f", values("standalone-values.yaml"), "--set", "networkPolicy.enabled=true",
			"--set", "networkPolicy.egress.dns.enabled=false", "--set", "networkPolicy.egress.webhooks.enabled=false",
			"--set", "containerPorts.api=8000", "--set", "containerPorts.ops=9000")
		np := get[*networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
		require.Equal(t, []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{port(5432, &tcp)}}}, np.Spec.Egress)
		require.Equal(t, []networkingv1.NetworkPolicyPort{port(8000, &tcp)}, np.Spec.Ingress[0].Ports, "the container ports")
		require.Equal(t, []networkingv1.NetworkPolicyPort{port(9000, &tcp)}, np.Spec.Ingress[1].Ports)
	})
}

func TestPrometheusRuleLabelMatchers(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("standalone-values.yaml"),
		"--set", "prometheusRule.enabled=true", "--set-string", `prometheusRule.labelMatchers=namespace="shop"`)
	rule := get[*unstructured.Unstructured](t, r, "PrometheusRule")
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	var exprs []string
	for _, x := range groups[0].(map[string]any)["rules"].([]any) {
		exprs = append(exprs, x.(map[string]any)["expr"].(string))
	}
	require.Equal(t, []string{
		`max(outbox_relay_outbox_oldest_age_seconds{namespace="shop"}) > 300`,
		`sum(rate(outbox_relay_attempts_total{outcome!="2xx",namespace="shop"}[5m])) / sum(rate(outbox_relay_attempts_total{namespace="shop"}[5m])) > 0.2`,
		`max(outbox_relay_subscriptions{status="disabled",namespace="shop"}) > 0`,
	}, exprs)
}

func TestChecksumFollowsConfig(t *testing.T) {
	t.Parallel()
	checksums := func(args ...string) map[string]string {
		r := render(t, chartDir, append([]string{"-f", values("standalone-values.yaml")}, args...)...)
		return get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Annotations
	}
	base := checksums()
	require.Equal(t, base, checksums(), "the same values give the same checksums")

	changed := checksums("--set", "config.RELAY_LOG_LEVEL=debug")
	require.NotEqual(t, base["checksum/config"], changed["checksum/config"])
	require.Equal(t, base["checksum/secret"], changed["checksum/secret"])

	changed = checksums("--set", "secret.apiToken=rotated")
	require.Equal(t, base["checksum/config"], changed["checksum/config"])
	require.NotEqual(t, base["checksum/secret"], changed["checksum/secret"])
}

func TestStartupProbe(t *testing.T) {
	t.Parallel()
	c := get[*appsv1.Deployment](t, render(t, chartDir, "-f", values("standalone-values.yaml")), "Deployment").Spec.Template.Spec.Containers[0]
	require.Equal(t, int32(2), c.StartupProbe.PeriodSeconds)
	require.Equal(t, int32(30), c.StartupProbe.FailureThreshold, "a minute to start before liveness counts")

	r := render(t, chartDir, "-f", values("standalone-values.yaml"), "--set", "startupProbe=null")
	c = get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0]
	require.Nil(t, c.StartupProbe)
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.ReadinessProbe)
}

func TestSingleReplicaHasNoPodDisruptionBudget(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("standalone-values.yaml"), "--set", "replicaCount=1")
	require.NotContains(t, r.kinds(), "PodDisruptionBudget", "minAvailable 1 of 1 would block every node drain")
}

func TestInsecureNoAuth(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "--set", "secret.databaseURL=postgres://db/app", "--set", "config.RELAY_INSECURE_NO_AUTH=true")
	c := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[0]
	token := envVar(c, "RELAY_API_TOKEN")
	require.NotNil(t, token, "the relay wants RELAY_API_TOKEN set, and empty")
	require.Nil(t, token.ValueFrom)
	require.Empty(t, token.Value)
	require.NotContains(t, get[*corev1.Secret](t, r, "Secret").Data, "api-token")
}

func TestMigrationJobWithChartSecret(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("standalone-values.yaml"), "--set", "migrationJob.enabled=true")
	var hookSecret *corev1.Secret
	for _, m := range r {
		if s, ok := m.Object.(*corev1.Secret); ok && s.Annotations["helm.sh/hook"] != "" {
			hookSecret = s
		}
	}
	require.NotNil(t, hookSecret, "a pre-install Job cannot read the release's Secret; it gets a hook copy")
	require.Equal(t, "pre-install,pre-upgrade", hookSecret.Annotations["helm.sh/hook"])
	require.Equal(t, "-10", hookSecret.Annotations["helm.sh/hook-weight"], "before the Job (weight 0)")
	require.Equal(t, "before-hook-creation,hook-succeeded", hookSecret.Annotations["helm.sh/hook-delete-policy"])
	jc := get[*batchv1.Job](t, r, "Job").Spec.Template.Spec.Containers[0]
	requireFromSecret(t, jc, "RELAY_DATABASE_URL", hookSecret.Name, "database-url")
	require.Contains(t, hookSecret.Data, "database-url")
}

func TestSidecarModeRendersNoWorkload(t *testing.T) {
	t.Parallel()
	r := render(t, chartDir, "-f", values("sidecar-values.yaml"))
	require.Equal(t, map[string]int{"Secret": 2, "PrometheusRule": 1, "Job": 1, "PodMonitor": 1}, r.kinds(),
		"the relay's Secret, the migration Job and its hook copy of the Secret, the monitoring")
	requireStandardLabels(t, r)
	for _, m := range r {
		if s, ok := m.Object.(*corev1.Secret); ok {
			require.Contains(t, s.Data, "encryption-key")
		}
	}

	job := get[*batchv1.Job](t, r, "Job")
	jc := job.Spec.Template.Spec.Containers[0]
	require.Equal(t, []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-env"}}},
	}, jc.EnvFrom)
	require.Equal(t, []corev1.Volume{{Name: "ca-bundle", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: "corp-ca"}}}}, job.Spec.Template.Spec.Volumes)
	require.Equal(t, []corev1.VolumeMount{{Name: "ca-bundle", MountPath: "/etc/outbox-relay/ca", ReadOnly: true}}, jc.VolumeMounts,
		"the application's volume shop-data is not in the Job's pod: the Job does not mount it")

	pm := get[*unstructured.Unstructured](t, r, "PodMonitor")
	require.Equal(t, "monitoring.coreos.com/v1", pm.GetAPIVersion())
	require.Equal(t, "prometheus", pm.GetLabels()["release"])
	matchLabels, _, err := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop"}, matchLabels,
		"the application's pods, by the labels the values give")
	namespaces, _, err := unstructured.NestedStringSlice(pm.Object, "spec", "namespaceSelector", "matchNames")
	require.NoError(t, err)
	require.Equal(t, []string{namespace}, namespaces)
	endpoints, _, err := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	require.NoError(t, err)
	require.Equal(t, []any{map[string]any{"port": "ops", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}}, endpoints)
}

func TestSidecarInApplicationChart(t *testing.T) {
	t.Parallel()
	app := wrapperChart(t)
	r := render(t, app)
	require.Equal(t, map[string]int{"Secret": 1, "Service": 1, "Deployment": 1}, r.kinds(),
		"the application's Deployment and Service, the relay's Secret, and no relay workload")

	dep := get[*appsv1.Deployment](t, r, "Deployment")
	require.Equal(t, "demo-shop", dep.Name)
	spec := dep.Spec.Template.Spec
	require.Len(t, spec.Containers, 2)
	require.Equal(t, "shop", spec.Containers[0].Name)
	c := spec.Containers[1]
	require.Equal(t, "outbox-relay", c.Name)
	require.Equal(t, "ghcr.io/referralloop/outbox-relay:"+chartMeta(t).AppVersion, c.Image, "the relay's appVersion, not the application's")
	requireRelayContainer(t, c)
	require.Empty(t, c.EnvFrom, "settings are inline: the pod spec changes with them")
	require.Equal(t, "info", envVar(c, "RELAY_LOG_LEVEL").Value)
	require.Equal(t, ":8080", envVar(c, "RELAY_LISTEN_ADDR").Value)
	require.Equal(t, ":9090", envVar(c, "RELAY_OPS_ADDR").Value)

	secret := get[*corev1.Secret](t, r, "Secret")
	require.Equal(t, "demo-outbox-relay", secret.Name)
	requireFromSecret(t, c, "RELAY_DATABASE_URL", secret.Name, "database-url")
	requireFromSecret(t, c, "RELAY_API_TOKEN", secret.Name, "api-token")
	require.Regexp(t, `^[0-9a-f]{64}$`, dep.Spec.Template.Annotations["checksum/outbox-relay-secret"])

	require.Empty(t, spec.Volumes, "no extraVolumes, no volumes")
	require.Empty(t, c.VolumeMounts)

	ports := map[string]bool{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			require.False(t, ports[p.Name], "port name %s twice in the pod", p.Name)
			ports[p.Name] = true
		}
	}
	svc := get[*corev1.Service](t, r, "Service")
	require.Equal(t, intstr.FromString("http"), svc.Spec.Ports[0].TargetPort)

	t.Run("ReverseProxy", func(t *testing.T) {
		t.Parallel()
		r := render(t, app, "--set", "outbox-relay.proxy.enabled=true",
			"--set", "outbox-relay.proxy.upstreamURL=http://127.0.0.1:3000",
			"--set", "outbox-relay.proxy.authURL=http://127.0.0.1:3000/auth/webhooks")
		c := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[1]
		require.Equal(t, "http://127.0.0.1:3000", envVar(c, "RELAY_UPSTREAM_URL").Value)
		require.Equal(t, "http://127.0.0.1:3000/auth/webhooks", envVar(c, "RELAY_AUTH_URL").Value)
		require.Equal(t, "/webhooks", envVar(c, "RELAY_PROXY_PREFIX").Value)
		svc := get[*corev1.Service](t, r, "Service")
		require.Equal(t, intstr.FromString("api"), svc.Spec.Ports[0].TargetPort, "traffic goes through the relay")
	})

	t.Run("ExistingSecret", func(t *testing.T) {
		t.Parallel()
		r := render(t, app, "--set", "outbox-relay.existingSecret=shop-relay", "--set", "outbox-relay.secret=null")
		require.Equal(t, map[string]int{"Service": 1, "Deployment": 1}, r.kinds())
		dep := get[*appsv1.Deployment](t, r, "Deployment")
		requireFromSecret(t, dep.Spec.Template.Spec.Containers[1], "RELAY_DATABASE_URL", "shop-relay", "database-url")
		require.NotContains(t, dep.Spec.Template.Annotations, "checksum/outbox-relay-secret")
	})

	t.Run("NoReadinessProbe", func(t *testing.T) {
		t.Parallel()
		r := render(t, app, "--set", "outbox-relay.readinessProbe=null")
		c := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[1]
		require.Nil(t, c.ReadinessProbe, "the README's way to keep the relay out of the pod's readiness")
		require.NotNil(t, c.LivenessProbe)
	})

	t.Run("ExtraEnvFromAndVolumes", func(t *testing.T) {
		t.Parallel()
		r := render(t, app,
			"--set-json", `outbox-relay.extraEnvFrom=[{"secretRef":{"name":"shop-otel"}}]`,
			"--set-json", `outbox-relay.extraVolumes=[{"name":"ca-bundle","secret":{"secretName":"corp-ca"}}]`,
			"--set-json", `outbox-relay.extraVolumeMounts=[{"name":"ca-bundle","mountPath":"/etc/outbox-relay/ca","readOnly":true}]`)
		spec := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec
		c := spec.Containers[1]
		require.Equal(t, []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-otel"}}},
		}, c.EnvFrom, "no ConfigMap in sidecar mode: the settings stay inline")
		require.Equal(t, []corev1.VolumeMount{{Name: "ca-bundle", MountPath: "/etc/outbox-relay/ca", ReadOnly: true}}, c.VolumeMounts)
		require.Equal(t, []corev1.Volume{{Name: "ca-bundle", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: "corp-ca"}}}}, spec.Volumes, "outbox-relay.sidecar.volumes")
		require.Empty(t, spec.Containers[0].EnvFrom, "the application's container is left alone")
		require.Empty(t, spec.Containers[0].VolumeMounts)
	})

	t.Run("PodMonitor", func(t *testing.T) {
		t.Parallel()
		r := render(t, app, "--set", "outbox-relay.podMonitor.enabled=true",
			"--set-json", `outbox-relay.podMonitor.selectorLabels={"app.kubernetes.io/name":"shop"}`)
		require.Equal(t, map[string]int{"Secret": 1, "Service": 1, "Deployment": 1, "PodMonitor": 1}, r.kinds())
		pod := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template
		pm := get[*unstructured.Unstructured](t, r, "PodMonitor")
		matchLabels, _, err := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
		require.NoError(t, err)
		require.True(t, k8slabels.SelectorFromSet(matchLabels).Matches(k8slabels.Set(pod.Labels)), "the PodMonitor selects the application's pods")
		endpoints, _, err := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		require.NoError(t, err)
		require.Len(t, endpoints, 1)
		var names []string
		for _, p := range pod.Spec.Containers[1].Ports {
			names = append(names, p.Name)
		}
		require.Contains(t, names, endpoints[0].(map[string]any)["port"], "it scrapes a port of the relay container")
	})

	t.Run("NoStartupProbe", func(t *testing.T) {
		t.Parallel()
		r := render(t, app, "--set", "outbox-relay.startupProbe=null")
		c := get[*appsv1.Deployment](t, r, "Deployment").Spec.Template.Spec.Containers[1]
		require.Nil(t, c.StartupProbe)
		require.NotNil(t, c.ReadinessProbe)
	})

	t.Run("StandaloneSubchartRefused", func(t *testing.T) {
		t.Parallel()
		msg := renderError(t, app, "--set", "outbox-relay.mode=standalone")
		require.Contains(t, msg, "set outbox-relay.mode to sidecar")
	})
}

func TestRefusedValues(t *testing.T) {
	t.Parallel()
	secrets := []string{"--set", "secret.databaseURL=postgres://db/app", "--set", "secret.apiToken=t"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"NoSecret", nil, "no database URL: set existingSecret"},
		{"NoAPIToken", []string{"--set", "secret.databaseURL=postgres://db/app"}, "no API token: set secret.apiToken"},
		{"TokenAndNoAuth", append(secrets, "--set", "config.RELAY_INSECURE_NO_AUTH=true"), "remove one of them"},
		{"TypoTopLevel", append(secrets, "--set", "replicas=3"), "additional properties 'replicas' not allowed"},
		{"TypoNested", append(secrets, "--set", "serviceMonitor.enable=true"), "additional properties 'enable' not allowed"},
		{"TypoConfig", append(secrets, "--set", "config.RELAY_POLL_INTERVALL=2s"), "additional properties 'RELAY_POLL_INTERVALL' not allowed"},
		{"SecretInConfig", append(secrets, "--set", "config.RELAY_DATABASE_URL=postgres://db/app"), "additional properties 'RELAY_DATABASE_URL' not allowed"},
		{"PortInConfig", append(secrets, "--set", "config.RELAY_LISTEN_ADDR=:80"), "additional properties 'RELAY_LISTEN_ADDR' not allowed"},
		{"DurationWithoutUnit", append(secrets, "--set", "config.RELAY_POLL_INTERVAL=5"), "/config/RELAY_POLL_INTERVAL"},
		{"BadLogLevel", append(secrets, "--set", "config.RELAY_LOG_LEVEL=verbose"), "/config/RELAY_LOG_LEVEL"},
		{"BatchTooLarge", append(secrets, "--set", "config.RELAY_BATCH_SIZE=20000"), "/config/RELAY_BATCH_SIZE"},
		{"PoolOfOne", append(secrets, "--set", "config.RELAY_DB_MAX_CONNS=1"), "/config/RELAY_DB_MAX_CONNS"},
		{"UnknownMode", append(secrets, "--set", "mode=daemonset"), "/mode"},
		{"ProxyWithoutUpstream", append(secrets, "--set", "proxy.enabled=true"), "proxy.enabled needs proxy.upstreamURL"},
		{"PreviousKeyAlone", append(secrets, "--set", "secret.encryptionKeyPrevious=x"), "secret.encryptionKeyPrevious is set but secret.encryptionKey is not"},
		{"SamePorts", append(secrets, "--set", "containerPorts.ops=8080"), "containerPorts.api and containerPorts.ops must differ"},
		{"PodMonitorInStandaloneMode", append(secrets, "--set", "podMonitor.enabled=true", "--set", "podMonitor.selectorLabels.app=shop"), "podMonitor is for sidecar mode"},
		{"PodMonitorWithoutSelector", append(secrets, "--set", "mode=sidecar", "--set", "podMonitor.enabled=true"), "podMonitor.selectorLabels must name labels"},
		{"NetworkPolicyInSidecarMode", append(secrets, "--set", "mode=sidecar", "--set", "networkPolicy.enabled=true"), "networkPolicy is for standalone mode"},
		{"NetworkPolicyNoDatabasePorts", append(secrets, "--set-json", "networkPolicy.egress.database.ports=[]"), "/networkPolicy/egress/database/ports"},
		{"NetworkPolicyPeerTypo", append(secrets, "--set-json", `networkPolicy.egress.database.to=[{"ipblock":{"cidr":"10.0.0.0/8"}}]`), "additional properties 'ipblock' not allowed"},
		{"EnvFromWithoutSource", append(secrets, "--set-json", `extraEnvFrom=[{"prefix":"OTEL_"}]`), "/extraEnvFrom/0"},
		{"MountWithoutPath", append(secrets, "--set-json", `extraVolumeMounts=[{"name":"ca-bundle"}]`), "/extraVolumeMounts/0"},
		{"DigestWithoutAlgorithm", append(secrets, "--set", "image.digest=1111111111111111111111111111111111111111111111111111111111111111"), "/image/digest"},
		{"TestImageAsString", append(secrets, "--set", "tests.image=busybox:1.37"), "/tests/image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, renderError(t, chartDir, tt.args...), tt.want)
		})
	}
}

// requireRelayContainer checks what every relay container must have, wherever it runs.
func requireRelayContainer(t *testing.T, c corev1.Container) {
	t.Helper()
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, map[string]int32{"api": 8080, "ops": 9090}, ports)

	require.NotNil(t, c.StartupProbe)
	require.Equal(t, "/healthz", c.StartupProbe.HTTPGet.Path, "not /readyz: restarting a relay whose database is down does not help")
	require.Equal(t, intstr.FromString("ops"), c.StartupProbe.HTTPGet.Port)
	require.NotNil(t, c.LivenessProbe)
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, intstr.FromString("ops"), c.LivenessProbe.HTTPGet.Port)
	require.NotNil(t, c.ReadinessProbe)
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, intstr.FromString("ops"), c.ReadinessProbe.HTTPGet.Port)

	requireRestricted(t, c.SecurityContext)
	require.NotNil(t, c.Resources.Requests.Cpu())
	require.False(t, c.Resources.Requests.Memory().IsZero())
}

// requireRestricted checks the container fields of the restricted Pod Security Standard.
func requireRestricted(t *testing.T, sc *corev1.SecurityContext) {
	t.Helper()
	require.NotNil(t, sc)
	require.True(t, *sc.RunAsNonRoot)
	require.Equal(t, int64(65532), *sc.RunAsUser)
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	require.Empty(t, sc.Capabilities.Add)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
}

// requireFromSecret checks that the variable comes from that key of that Secret.
func requireFromSecret(t *testing.T, c corev1.Container, name, secret, key string) {
	t.Helper()
	v := envVar(c, name)
	require.NotNil(t, v, "%s not in the env of %s", name, c.Name)
	require.NotNil(t, v.ValueFrom, "%s must come from a Secret", name)
	require.NotNil(t, v.ValueFrom.SecretKeyRef, "%s must come from a Secret", name)
	require.Equal(t, secret, v.ValueFrom.SecretKeyRef.Name, name)
	require.Equal(t, key, v.ValueFrom.SecretKeyRef.Key, name)
	require.Empty(t, v.Value, "%s has a literal value", name)
}

var standardLabels = []string{
	"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
	"app.kubernetes.io/managed-by", "helm.sh/chart",
}

// requireStandardLabels checks the recommended labels on every manifest the chart rendered.
func requireStandardLabels(t *testing.T, r release) {
	t.Helper()
	for _, m := range r {
		var labels map[string]string
		switch o := m.Object.(type) {
		case *unstructured.Unstructured:
			labels = o.GetLabels()
		case interface{ GetLabels() map[string]string }:
			labels = o.GetLabels()
		}
		for _, l := range standardLabels {
			require.NotEmpty(t, labels[l], "%s %s has no label %s", m.Kind, m.Name, l)
		}
		require.Equal(t, "demo", labels["app.kubernetes.io/instance"])
		require.Regexp(t, regexp.MustCompile(`^outbox-relay-\d+\.\d+\.\d+`), labels["helm.sh/chart"])
	}
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

type chartYAML struct {
	Version    string `json:"version"`
	AppVersion string `json:"appVersion"`
}

func chartMeta(t *testing.T) chartYAML {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	require.NoError(t, err)
	var c chartYAML
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.NotEmpty(t, c.AppVersion)
	return c
}

// TestEveryVariableIsSettable keeps the chart in step with config/config.go: every RELAY_
// variable must be a key of `config` in the schema, or one the chart sets from other values.
func TestEveryVariableIsSettable(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../../config/config.go")
	require.NoError(t, err)
	var vars []string
	for _, m := range regexp.MustCompile(`envconfig:"(RELAY_[A-Z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		vars = append(vars, m[1])
	}
	require.NotEmpty(t, vars)

	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	require.NoError(t, yaml.Unmarshal(b, &schema))
	fromOtherValues := map[string]string{
		"RELAY_DATABASE_URL":            "secret.databaseURL / secretKeys.databaseURL",
		"RELAY_LISTEN_DATABASE_URL":     "secret.listenDatabaseURL / secretKeys.listenDatabaseURL",
		"RELAY_API_TOKEN":               "secret.apiToken / secretKeys.apiToken",
		"RELAY_ENCRYPTION_KEY":          "secret.encryptionKey / secretKeys.encryptionKey",
		"RELAY_ENCRYPTION_KEY_PREVIOUS": "secret.encryptionKeyPrevious / secretKeys.encryptionKeyPrevious",
		"RELAY_LISTEN_ADDR":             "containerPorts.api",
		"RELAY_OPS_ADDR":                "containerPorts.ops",
		"RELAY_UPSTREAM_URL":            "proxy.upstreamURL",
		"RELAY_AUTH_URL":                "proxy.authURL",
		"RELAY_PROXY_PREFIX":            "proxy.prefix",
	}
	for _, v := range vars {
		_, inConfig := schema.Properties.Config.Properties[v]
		_, elsewhere := fromOtherValues[v]
		require.True(t, inConfig != elsewhere,
			"%s: add it to config's properties in values.schema.json (and the list in values.yaml), or to fromOtherValues if the chart sets it", v)
	}
	for v := range schema.Properties.Config.Properties {
		require.Contains(t, vars, v, "the schema allows %s, which config/config.go does not read", v)
	}
}

// TestReadmeExampleIsTested keeps the sidecar example in the chart's README identical to the
// test application's Deployment, which TestSidecarInApplicationChart renders.
func TestReadmeExampleIsTested(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile(filepath.Join(wrapperDir, "templates", "deployment.yaml"))
	require.NoError(t, err)
	for _, name := range []string{"README.md", "README.md.gotmpl"} {
		readme, err := os.ReadFile(filepath.Join(chartDir, name))
		require.NoError(t, err)
		example := string(readme)
		if name == "README.md.gotmpl" {
			// helm-docs prints raw strings as they are: {{ `...` }}
			example = strings.NewReplacer("{{ `", "", "` }}", "").Replace(example)
		}
		require.True(t, strings.Contains(example, "# templates/deployment.yaml\n"+string(fixture)),
			"%s: the sidecar example differs from %s/templates/deployment.yaml", name, wrapperDir)
	}
}

func TestNotes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		want     []string
		dontWant []string
	}{
		{"Standalone", []string{"-f", values("standalone-values.yaml")},
			[]string{"runs as 2 pod(s) in namespace shop", "port-forward svc/demo-outbox-relay 8080 9090",
				"get secret demo-outbox-relay -o jsonpath='{.data.api-token}'", "stored in the release history"},
			[]string{"migrate", "sidecar"}},
		{"Full", []string{"-f", values("full-values.yaml")},
			[]string{"get secret app-outbox-relay -o jsonpath='{.data.API_TOKEN}'", "The Job demo-outbox-relay-migrate ran"},
			[]string{"release history"}},
		{"Proxy", []string{"-f", values("standalone-values.yaml"), "--set", "proxy.enabled=true",
			"--set", "proxy.upstreamURL=http://shop:3000", "--set", "proxy.authURL=http://shop:3000/auth"},
			[]string{"Reverse proxy:", "under /webhooks", "RELAY_ADMIN_ADDR"},
			[]string{"Bearer $TOKEN"}},
		{"Sidecar", []string{"-f", values("sidecar-values.yaml")},
			[]string{"sidecar mode", `{{- include "outbox-relay.sidecar" (dict "root" $) | nindent 8 }}`, "The Secret demo-outbox-relay"},
			[]string{"port-forward"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := notes(t, tt.args...)
			for _, s := range tt.want {
				require.Contains(t, n, s)
			}
			for _, s := range tt.dontWant {
				require.NotContains(t, n, s)
			}
		})
	}
}
