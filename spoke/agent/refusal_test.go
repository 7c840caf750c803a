package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

func TestClassifyCreateError(t *testing.T) {
	jobsets := schema.GroupResource{Group: "jobset.x-k8s.io", Resource: "jobsets"}
	terminating := apierrors.NewForbidden(jobsets, "train", errors.New("unable to create new content in namespace team because it is being terminated"))
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Field: "metadata.namespace"}}
	for _, tc := range []struct {
		name    string
		err     error
		reason  string
		lasting bool
	}{
		{"nil", nil, "", false},
		{"namespace terminating", fmt.Errorf("creating: %w", terminating), fleet.ReasonNamespaceTerminating, true},
		{"quota exceeded", apierrors.NewForbidden(jobsets, "train", errors.New("exceeded quota: js, requested: count/jobsets.jobset.x-k8s.io=1, used: count/jobsets.jobset.x-k8s.io=0, limited: count/jobsets.jobset.x-k8s.io=0")), fleet.ReasonQuotaExceeded, true},
		{"quota needs limits", apierrors.NewForbidden(jobsets, "train", errors.New("failed quota: compute: must specify limits.cpu")), fleet.ReasonQuotaExceeded, true},
		{"quota usage not yet known", apierrors.NewForbidden(jobsets, "train", errors.New("status unknown for quota: js, resources: count/jobsets.jobset.x-k8s.io")), "", false},
		{"webhook denied", apierrors.NewForbidden(jobsets, "train", errors.New(`admission webhook "deny.example.com" denied the request: no`)), fleet.ReasonMemberRefused, true},
		{"policy denied (Invalid)", apierrors.NewInvalid(schema.GroupKind{Group: "jobset.x-k8s.io", Kind: "JobSet"}, "train", field.ErrorList{field.Forbidden(field.NewPath("spec"), "ValidatingAdmissionPolicy 'p' denied request")}), fleet.ReasonMemberRefused, true},
		{"too large", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), fleet.ReasonMemberRefused, true},
		{"already exists (cache lag)", apierrors.NewAlreadyExists(jobsets, "train"), "", false},
		{"conflict", apierrors.NewConflict(jobsets, "train", errors.New("x")), "", false},
		{"webhook unreachable", apierrors.NewInternalError(errors.New(`failed calling webhook "x": connection refused`)), "", false},
		{"timeout", apierrors.NewTimeoutError("x", 1), "", false},
		{"throttled", apierrors.NewTooManyRequests("x", 1), "", false},
		{"unavailable", apierrors.NewServiceUnavailable("x"), "", false},
		{"not an API error", errors.New("dial tcp: connection refused"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, lasting := ClassifyCreateError(tc.err)
			if reason != tc.reason || lasting != tc.lasting {
				t.Errorf("ClassifyCreateError = %q, %v; want %q, %v", reason, lasting, tc.reason, tc.lasting)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	d := testDispatch(2)
	st := Refused(d, now, "a", fleet.ReasonQuotaExceeded, strings.Repeat("quota ", 200))
	c := meta.FindStatusCondition(st.Conditions, fleet.DispatchAccepted)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonQuotaExceeded || c.ObservedGeneration != d.Generation {
		t.Fatalf("condition %+v", c)
	}
	if len(c.Message) > fleet.MaxMemberReason || !strings.HasPrefix(c.Message, "cluster a refused JobSet team/train: quota") {
		t.Errorf("message (%d bytes) %q", len(c.Message), c.Message)
	}
	d.Status = *st
	if again := Refused(d, metav1.NewTime(now.Add(time.Minute)), "a", fleet.ReasonQuotaExceeded, strings.Repeat("quota ", 200)); again != nil {
		t.Errorf("the same refusal is written again: %+v", again)
	}
}

func TestComputePlanRefusals(t *testing.T) {
	plan := func(d *fleet.JobSetDispatch, at time.Time, denied ...string) planSummary {
		return summarize(ComputePlan(Observed{Key: "fleet-member-a/" + d.Name, ClusterName: "a", Now: metav1.NewTime(at), Dispatch: d, DeniedNamespaces: denied}))
	}
	refusedAt := func(reason string, generation int64) *fleet.JobSetDispatch {
		d := testDispatch(2)
		d.Status = *Refused(d, now, "a", reason, "no")
		d.Generation = generation
		return d
	}
	create := &copySummary{Finalizers: []string{fleet.ReportFinalizer}}
	inNS := func(ns string) *fleet.JobSetDispatch {
		d := testDispatch(2)
		d.Spec.Origin.Namespace = ns
		return d
	}
	for _, tc := range []struct {
		name string
		d    *fleet.JobSetDispatch
		at   time.Time
		deny []string
		want planSummary
	}{
		{"built-in denied namespace", inNS("kube-system"), now.Time, nil,
			planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonNamespaceDenied}}},
		{"the fleet's own namespace", inNS("jobset-fleet-system"), now.Time, nil,
			planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonNamespaceDenied}}},
		{"denied by --denied-namespaces, prefix", inNS("secret-team"), now.Time, []string{"secret-*"},
			planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonNamespaceDenied}}},
		{"extra list adds, does not replace", inNS("kube-public"), now.Time, []string{"other"},
			planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonNamespaceDenied}}},
		{"allowed namespace is created", inNS("team"), now.Time, []string{"secret-*"},
			planSummary{AddFinalizer: true, Create: create, ConfirmCurrent: true, State: StatePending, ReportAfter: ReportInterval}},
		{"refused moments ago: wait", refusedAt(fleet.ReasonQuotaExceeded, 3), now.Add(10 * time.Second), nil,
			planSummary{State: StateRefused, ReportAfter: RefusalRetryInterval - 10*time.Second}},
		{"refused long ago: try again", refusedAt(fleet.ReasonQuotaExceeded, 3), now.Add(RefusalRetryInterval), nil,
			planSummary{AddFinalizer: true, Create: create, ConfirmCurrent: true, State: StatePending, ReportAfter: ReportInterval}},
		{"refused for an older generation: try at once", refusedAt(fleet.ReasonMemberRefused, 4), now.Add(time.Second), nil,
			planSummary{AddFinalizer: true, Create: create, ConfirmCurrent: true, State: StatePending, ReportAfter: ReportInterval}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, plan(tc.d, tc.at, tc.deny...)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredJobSetEpoch(t *testing.T) {
	d := testDispatch(7)
	d.Spec.JobSet.Spec.ReplicatedJobs = append(d.Spec.JobSet.Spec.ReplicatedJobs, *d.Spec.JobSet.Spec.ReplicatedJobs[0].DeepCopy())
	d.Spec.JobSet.Spec.ReplicatedJobs[1].Name = "driver"
	pod := &d.Spec.JobSet.Spec.ReplicatedJobs[1].Template.Spec.Template
	pod.Annotations = map[string]string{"user": "kept", fleet.PodEpochAnnotation: "999"}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "a"}, {Name: fleet.EpochEnvVar, Value: "999"}, {Name: "B", Value: "b"}}
	before := d.DeepCopy()

	js := DesiredJobSet(d)
	if !cmp.Equal(before, d) {
		t.Error("DesiredJobSet modified the dispatch")
	}
	want := corev1.EnvVar{Name: fleet.EpochEnvVar, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['fleet.jobset.x-k8s.io/epoch']"}}}
	for _, rj := range js.Spec.ReplicatedJobs {
		tpl := rj.Template.Spec.Template
		if got := tpl.Annotations[fleet.PodEpochAnnotation]; got != "7" {
			t.Errorf("%s: pod annotation %s = %q, want 7", rj.Name, fleet.PodEpochAnnotation, got)
		}
		for _, c := range append(tpl.Spec.InitContainers, tpl.Spec.Containers...) {
			var epochVars []corev1.EnvVar
			for _, e := range c.Env {
				if e.Name == fleet.EpochEnvVar {
					epochVars = append(epochVars, e)
				}
			}
			if diff := cmp.Diff([]corev1.EnvVar{want}, epochVars); diff != "" {
				t.Errorf("%s/%s: %s (-want +got):\n%s", rj.Name, c.Name, fleet.EpochEnvVar, diff)
			}
		}
	}
	driver := js.Spec.ReplicatedJobs[1].Template.Spec.Template
	if driver.Annotations["user"] != "kept" {
		t.Errorf("user annotation lost: %v", driver.Annotations)
	}
	if diff := cmp.Diff([]corev1.EnvVar{{Name: "A", Value: "a"}, {Name: "B", Value: "b"}, want}, driver.Spec.Containers[0].Env); diff != "" {
		t.Errorf("user env (-want +got):\n%s", diff)
	}
	// The copy as stored is what DesiredJobSet asks for: no update loop.
	if got := MergeMutable(NewCopy(d, 0, 0), DesiredJobSet(d)); got != nil {
		t.Errorf("MergeMutable of an unchanged copy wants an update")
	}
}

func TestPodSecurityLabels(t *testing.T) {
	d := testDispatch(1)
	d.Spec.NamespaceLabels = map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "baseline",
		"team":                                       "a",
		"kubernetes.io/metadata.name":                "team",
	}
	want := map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "baseline",
	}
	if diff := cmp.Diff(want, fleet.PodSecurityLabels(d.Spec.NamespaceLabels)); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestSinceRecordedRenewal(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC) }
	for _, tc := range []struct {
		name          string
		recorded, now time.Time
		want          time.Duration
		ok            bool
	}{
		{"20s ago, rounded up by a stamp", at(10), at(30), 21 * time.Second, true},
		{"same second", at(10), at(10), time.Second, true},
		// Two apiserver replicas a little apart: never negative.
		{"fresh stamp earlier", at(10), at(9), time.Second, true},
		{"no record stamp", time.Time{}, at(30), 0, false},
		{"no fresh stamp", at(10), time.Time{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SinceRecordedRenewal(tc.recorded, tc.now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("SinceRecordedRenewal = %s, %v; want %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFieldStamp(t *testing.T) {
	t1, t2 := metav1.NewTime(time.Unix(100, 0)), metav1.NewTime(time.Unix(200, 0))
	entries := []metav1.ManagedFieldsEntry{
		{Manager: "agent", Time: &t1, FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:holderIdentity":{},"f:renewTime":{}}}`)},
		{Manager: clockProbeManager, Time: &t2, FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:annotations":{"f:fleet.jobset.x-k8s.io/clock-probe":{}}}}`)},
	}
	if got := fieldStamp(entries, "f:spec", "f:renewTime"); !got.Equal(t1.Time) {
		t.Errorf("stamp of renewTime = %s, want %s (the probe's write must not count)", got, t1)
	}
	if got := fieldStamp(entries[1:], "f:spec", "f:renewTime"); !got.IsZero() {
		t.Errorf("stamp without an owner = %s", got)
	}
}

func TestUnauthorizedMessage(t *testing.T) {
	exp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cmd := "jobset-fleet-agent join --hub-kubeconfig <hub admin kubeconfig> --member-kubeconfig <member admin kubeconfig> --cluster-name m1 --hub-server https://hub:6443"
	expired := UnauthorizedMessage("m1", "https://hub:6443", exp, exp.Add(time.Hour))
	if !strings.Contains(expired, "expired at 2026-01-01T00:00:00Z") || !strings.HasSuffix(expired, cmd) {
		t.Errorf("expired: %q", expired)
	}
	revoked := UnauthorizedMessage("m1", "https://hub:6443", exp, exp.Add(-time.Hour))
	if strings.Contains(revoked, "expired") || !strings.Contains(revoked, "no longer accepts") || !strings.HasSuffix(revoked, cmd) {
		t.Errorf("revoked: %q", revoked)
	}
	if len(expired) > fleet.MaxEventNote {
		t.Errorf("message of %d bytes does not fit an event note", len(expired))
	}
}

func TestNamespaceNotFound(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"namespace missing", fmt.Errorf("create: %w", apierrors.NewNotFound(corev1.Resource("namespaces"), "team")), true},
		{"CRD not served", apierrors.NewNotFound(schema.GroupResource{Group: "jobset.x-k8s.io", Resource: "jobsets"}, ""), false},
		{"other error", apierrors.NewForbidden(corev1.Resource("namespaces"), "team", errors.New("no")), false},
		{"nil", nil, false},
	} {
		if got := namespaceNotFound(tc.err); got != tc.want {
			t.Errorf("%s: namespaceNotFound = %v, want %v", tc.name, got, tc.want)
		}
	}
}
