package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestAgentMemberBoundary runs an agent on a real hub and member and
// checks what a copy may get on the member and what the member may refuse:
//   - a namespace the agent creates carries the hub namespace's Pod
//     Security labels (and nothing else of them);
//   - every Pod template of a copy carries its epoch, as an annotation and
//     as an environment variable read from it through the Downward API;
//   - a lasting refusal of the member (quota on count/jobsets, a namespace
//     being deleted, the agent's namespace policy, a missing namespace with
//     --create-namespaces=false) is reported as Accepted=False with its
//     reason and the member's bounded message, and no copy runs.
func TestAgentMemberBoundary(t *testing.T) {
	clusters := testenv.StartN(t, "boundary-hub", "boundary-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: clusterName, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	must(t, err)
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	policy := func(o *agent.Options) { o.DeniedNamespaces = []string{"secret-*"} }
	a := startAgent(t, t.Cleanup, member, agentCfg, policy)

	t.Run("a created namespace carries the hub's Pod Security labels; Pods carry the epoch", func(t *testing.T) {
		d := newDispatch("team-psa", "train", 3)
		d.Spec.NamespaceLabels = map[string]string{
			"pod-security.kubernetes.io/enforce":         "baseline",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/warn":            "restricted",
			"owner":                                      "team",
		}
		d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: fleet.EpochEnvVar, Value: "99"}}
		must(t, hub.Client.Create(ctx, d))
		waitMemberJobSet(t, member.Client, "team-psa", "train", nil)
		ns := &corev1.Namespace{}
		must(t, member.Client.Get(ctx, client.ObjectKey{Name: "team-psa"}, ns))
		for k, want := range map[string]string{
			"pod-security.kubernetes.io/enforce":         "baseline",
			"pod-security.kubernetes.io/enforce-version": "latest",
			"pod-security.kubernetes.io/warn":            "restricted",
		} {
			if got := ns.Labels[k]; got != want {
				t.Errorf("member namespace label %s = %q, want %q (labels %v)", k, got, want, ns.Labels)
			}
		}
		if _, ok := ns.Labels["owner"]; ok {
			t.Errorf("member namespace got a hub label that is not Pod Security's: %v", ns.Labels)
		}

		// The Pods' template, as the Jobs the member's JobSet controller
		// made hand it to the Job controller.
		testenv.Eventually(t, 20*time.Second, "2 Jobs whose pod template carries epoch 3", func() error {
			jobs := memberJobs(t, member.Client, "team-psa", "train")
			if len(jobs) != 2 {
				return fmt.Errorf("%d Jobs", len(jobs))
			}
			for _, j := range jobs {
				tpl := j.Spec.Template
				if got := tpl.Annotations[fleet.PodEpochAnnotation]; got != "3" {
					return fmt.Errorf("Job %s: pod annotation %s = %q, want 3", j.Name, fleet.PodEpochAnnotation, got)
				}
				for _, c := range tpl.Spec.Containers {
					var found []string
					for _, e := range c.Env {
						if e.Name == fleet.EpochEnvVar {
							found = append(found, fmt.Sprintf("value %q from %+v", e.Value, e.ValueFrom))
							if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
								e.ValueFrom.FieldRef.FieldPath != "metadata.annotations['"+fleet.PodEpochAnnotation+"']" {
								return fmt.Errorf("Job %s container %s: %s is not read from the epoch annotation: %+v", j.Name, c.Name, e.Name, e)
							}
						}
					}
					if len(found) != 1 {
						return fmt.Errorf("Job %s container %s: %d %s variables (%v), want exactly the fleet's", j.Name, c.Name, len(found), fleet.EpochEnvVar, found)
					}
				}
			}
			return nil
		})
	})

	t.Run("a quota on count/jobsets refuses the copy: QuotaExceeded", func(t *testing.T) {
		must(t, member.Client.Create(ctx, namespace("team-quota")))
		hard := corev1.ResourceList{"count/jobsets.jobset.x-k8s.io": resource.MustParse("0")}
		quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "team-quota", Name: "no-jobsets"}, Spec: corev1.ResourceQuotaSpec{Hard: hard}}
		must(t, member.Client.Create(ctx, quota))
		// What the quota controller would write (none runs here).
		quota.Status = corev1.ResourceQuotaStatus{Hard: hard, Used: corev1.ResourceList{"count/jobsets.jobset.x-k8s.io": resource.MustParse("0")}}
		must(t, member.Client.Status().Update(ctx, quota))
		d := newDispatch("team-quota", "train", 1)
		must(t, hub.Client.Create(ctx, d))
		waitRefused(t, hub.Client, d, fleet.ReasonQuotaExceeded, "exceeded quota")
		if err := gone(member.Client, memberJobSet("team-quota", "train").Obj()); err != nil {
			t.Error(err)
		}
	})

	t.Run("a namespace being deleted on the member refuses the copy: NamespaceTerminating", func(t *testing.T) {
		// No namespace controller runs: the namespace stays Terminating.
		must(t, member.Client.Create(ctx, namespace("team-gone")))
		must(t, member.Client.Delete(ctx, namespace("team-gone")))
		d := newDispatch("team-gone", "train", 1)
		must(t, hub.Client.Create(ctx, d))
		waitRefused(t, hub.Client, d, fleet.ReasonNamespaceTerminating, "being terminated")
	})

	t.Run("the agent's namespace policy refuses: NamespaceDenied", func(t *testing.T) {
		for _, ns := range []string{"secret-ops", "kube-system", fleet.SystemNamespace} {
			d := newDispatch(ns, "train", 1)
			must(t, hub.Client.Create(ctx, d))
			waitRefused(t, hub.Client, d, fleet.ReasonNamespaceDenied, "namespace "+ns)
			if err := gone(member.Client, memberJobSet(ns, "train").Obj()); err != nil {
				t.Error(err)
			}
		}
		if err := gone(member.Client, namespace("secret-ops")); err != nil {
			t.Errorf("the agent created the denied namespace: %v", err)
		}
	})

	t.Run("--create-namespaces=false refuses a missing namespace: NamespaceMissing", func(t *testing.T) {
		a.stop()
		a = startAgent(t, t.Cleanup, member, agentCfg, policy, func(o *agent.Options) { o.RequireNamespaces = true })
		d := newDispatch("team-missing", "train", 1)
		must(t, hub.Client.Create(ctx, d))
		c := waitRefused(t, hub.Client, d, fleet.ReasonNamespaceMissing, "namespace team-missing")
		if !strings.Contains(c.Message, "--create-namespaces=false") {
			t.Errorf("the message does not name the flag: %q", c.Message)
		}
		if err := gone(member.Client, namespace("team-missing")); err != nil {
			t.Errorf("the agent created the namespace: %v", err)
		}
		// An existing namespace is used as before.
		must(t, member.Client.Create(ctx, namespace("team-there")))
		must(t, hub.Client.Create(ctx, newDispatch("team-there", "train", 1)))
		waitMemberJobSet(t, member.Client, "team-there", "train", nil)
	})
}

// waitRefused waits for the agent to report the dispatch refused with
// reason, with a bounded message containing want.
func waitRefused(t *testing.T, hub client.Client, d *fleet.JobSetDispatch, reason, want string) metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	testenv.Eventually(t, 20*time.Second, "the dispatch refused with "+reason, func() error {
		got := getDispatch(t, hub, d.Name)
		c = meta.FindStatusCondition(got.Status.Conditions, fleet.DispatchAccepted)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason {
			return fmt.Errorf("conditions %+v", got.Status.Conditions)
		}
		return nil
	})
	if !strings.Contains(c.Message, want) || len(c.Message) > fleet.MaxMemberReason {
		t.Errorf("refusal message (%d bytes) %q: want it to say %q, within %d bytes", len(c.Message), c.Message, want, fleet.MaxMemberReason)
	}
	return *c
}

// TestAgentHubUnauthorized: the hub rejects the agent's token (here: its
// ServiceAccount was deleted, as a takeover or an expiry leaves it: the
// token no longer authenticates). The agent says so on the member, where
// an operator looks: a Warning event on its hub kubeconfig Secret with the
// exact command that recovers, and it stays fenced.
func TestAgentHubUnauthorized(t *testing.T) {
	clusters := testenv.StartN(t, "unauth-hub", "unauth-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	_, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: clusterName, HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	must(t, err)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentServiceAccount}}
	must(t, hub.Client.Delete(ctx, sa))
	secretKey := client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}
	cfg, creds, err := agent.HubConfigFromSecret(ctx, member.Client, secretKey, agent.DefaultCredentialsOptions())
	must(t, err)
	a := startAgent(t, t.Cleanup, member, cfg, func(o *agent.Options) { o.Credentials = creds })

	command := "jobset-fleet-agent join --hub-kubeconfig <hub admin kubeconfig> --member-kubeconfig <member admin kubeconfig> --cluster-name " + clusterName + " --hub-server " + hub.Config.Host
	testenv.Eventually(t, 20*time.Second, "a Warning event on the hub kubeconfig Secret with the recovery command", func() error {
		var list eventsv1.EventList
		if err := member.Client.List(ctx, &list, client.InNamespace(fleet.SystemNamespace)); err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.Regarding.Kind != "Secret" || e.Regarding.Name != fleet.HubKubeconfigSecret {
				continue
			}
			seen = append(seen, e.Reason+": "+e.Note)
			if e.Type == corev1.EventTypeWarning && e.Reason == agent.ReasonHubUnauthorized && strings.Contains(e.Note, command) && strings.Contains(e.Note, "401") {
				return nil
			}
		}
		return fmt.Errorf("events on the Secret: %q", seen)
	})
	testenv.Eventually(t, 3*fenceTimeout, "the agent fenced and reporting itself unauthorized", func() error {
		if !a.Fenced() || !a.HubUnauthorized() {
			return fmt.Errorf("fenced %v, unauthorized %v", a.Fenced(), a.HubUnauthorized())
		}
		return nil
	})
}

// skewedClock is the wall clock of a node that is off by skew; durations
// measured on it are right.
type skewedClock struct {
	clock.RealClock
	skew time.Duration
}

func (c skewedClock) Now() time.Time                  { return time.Now().Add(c.skew) }
func (c skewedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// TestAgentRestartSkewedClock: the previous agent leader ran on a node
// whose wall clock was an hour behind or ahead; it recorded its last
// renewal with that clock. The hub becomes unreachable and a new leader
// with a correct clock takes over. It must fence at the recorded renewal
// plus the fence timeout, measured on the member apiserver's clock: not at
// once (clock behind: the renewal looks an hour old), not a fence timeout
// after its own start or later (clock ahead: the renewal looks recent).
func TestAgentRestartSkewedClock(t *testing.T) {
	const fence = 10 * time.Second
	clusters := testenv.StartN(t, "skew-hub", "skew-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	hubURL, err := url.Parse(hub.Config.Host)
	must(t, err)
	proxy, err := testenv.StartProxy(hubURL.Host)
	must(t, err)
	t.Cleanup(proxy.Cut)
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName: clusterName, HubServerURL: "https://" + proxy.Addr, HubCAData: hub.Config.CAData, SkipCRDs: true,
	})
	must(t, err)
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	must(t, hub.Client.Create(ctx, newDispatch("team-a", "train", 1)))

	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(fmt.Sprintf("previous leader's clock off by %s", skew), func(t *testing.T) {
			old := startAgent(t, t.Cleanup, member, agentCfg, func(o *agent.Options) {
				o.FenceTimeout = fence
				o.Clock = skewedClock{skew: skew}
			})
			waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
				if js.IsSuspended() {
					return errors.New("suspended")
				}
				return nil
			})
			// recordedRenewal is the renewal the leader recorded, in its
			// own clock, corrected by its skew: when that was, truly.
			recordedRenewal := func() (time.Time, error) {
				lease := &coordinationv1.Lease{}
				if err := member.Client.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.LastRenewalLeaseName}, lease); err != nil {
					return time.Time{}, err
				}
				at := lease.Spec.RenewTime.Time.Add(-skew)
				if since := time.Since(at); since > 5*time.Second || since < -time.Second {
					return time.Time{}, fmt.Errorf("recorded renewal %s is not the skewed leader's", lease.Spec.RenewTime.Time)
				}
				return at, nil
			}
			testenv.Eventually(t, 10*time.Second, "a renewal recorded by the skewed leader", func() error {
				_, err := recordedRenewal()
				return err
			})
			proxy.Cut()
			// The last renewal stops moving.
			var recorded time.Time
			testenv.Eventually(t, 10*time.Second, "the recorded renewal to stop moving", func() error {
				at, err := recordedRenewal()
				if err != nil {
					return err
				}
				if !at.Equal(recorded) || time.Since(at) < time.Second {
					recorded = at
					return fmt.Errorf("recorded renewal still moving: %s", at)
				}
				return nil
			})
			old.stop()
			time.Sleep(time.Until(recorded.Add(fence / 2)))
			started := time.Now()
			a := startAgent(t, t.Cleanup, member, agentCfg, func(o *agent.Options) { o.FenceTimeout = fence })

			var suspendedAt time.Time
			testenv.Eventually(t, 3*fence, "the copy suspended", func() error {
				js := waitMemberJobSet(t, member.Client, "team-a", "train", nil)
				if !js.IsSuspended() {
					return errors.New("not suspended")
				}
				suspendedAt = time.Now()
				return nil
			})
			since := suspendedAt.Sub(recorded).Round(time.Millisecond)
			// The member apiserver's stamps are whole seconds and round
			// towards fencing early, by at most two of them.
			if earliest := fence - 2*agent.StampResolution - 300*time.Millisecond; since < earliest {
				t.Errorf("fenced %s after the last renewal (%s after the restart): before the fence timeout %s", since, suspendedAt.Sub(started).Round(time.Millisecond), fence)
			}
			if latest := fence + 1500*time.Millisecond; since > latest {
				t.Errorf("fenced %s after the last renewal (%s after the restart): later than the fence timeout %s", since, suspendedAt.Sub(started).Round(time.Millisecond), fence)
			}
			t.Logf("fenced %s after the last renewal, %s after the restart", since, suspendedAt.Sub(started).Round(time.Millisecond))

			must(t, proxy.Heal())
			testenv.Eventually(t, 30*time.Second, "the agent unfenced", func() error {
				if !a.HubSynced() || a.Fenced() {
					return fmt.Errorf("hub synced %v, fenced %v", a.HubSynced(), a.Fenced())
				}
				return nil
			})
			waitMemberJobSet(t, member.Client, "team-a", "train", func(js *jobset.JobSet) error {
				if js.IsSuspended() {
					return errors.New("still suspended after the hub came back")
				}
				return nil
			})
			a.stop()
		})
	}
}
