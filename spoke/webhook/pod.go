package webhook

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Pod admission for exclusive placement, and the priority label.
//
// Scope: the objectSelector only sends JobSet pods (jobset-name label), as
// upstream's does. The mutating webhook sees every JobSet pod except those
// of the node-selector strategy (it labels them with their priority, which
// exclusive placement uses); matchConditions keep the validating webhook to
// followers-to-be: pods with the exclusive-topology annotation and without
// the node-selector strategy. Other pods never reach this server. Only
// CREATE is intercepted.
//
// failurePolicy=fail, deliberately: with "ignore", a follower admitted while
// the webhook is down would carry no nodeSelector and could land in another
// Job's domain, silently breaking the exclusivity the user asked for. With
// "fail", the Job controller just retries pod creation with backoff until the
// webhook is back. The narrow scope above keeps an outage from blocking any
// pod that is not a JobSet's (system pods, the agent itself).
//
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=mpod.kb.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10,patch=`{"objectSelector":{"matchExpressions":[{"key":"jobset.sigs.k8s.io/jobset-name","operator":"Exists"}]},"matchConditions":[{"name":"not-node-selector-strategy","expression":"!(has(object.metadata.annotations) && 'alpha.jobset.sigs.k8s.io/node-selector' in object.metadata.annotations)"}]}`
// +kubebuilder:webhook:path=/validate--v1-pod,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=vpod.kb.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10,patch=`{"objectSelector":{"matchExpressions":[{"key":"jobset.sigs.k8s.io/jobset-name","operator":"Exists"}]},"matchConditions":[{"name":"exclusive-topology","expression":"has(object.metadata.annotations) && 'alpha.jobset.sigs.k8s.io/exclusive-topology' in object.metadata.annotations && !('alpha.jobset.sigs.k8s.io/node-selector' in object.metadata.annotations)"}]}`

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get

// podWebhook places followers in their leader's domain.
//
// It reads pods and nodes live from the apiserver instead of through the
// manager's cache: a full Pod informer costs about 1 MB per pod at scale
// (upstream jobset#1055) and this webhook only ever needs one pod (the
// leader, found by a label-selected list that returns one item) and one
// node's labels (read as metadata only) per follower admission.
type podWebhook struct {
	reader client.Reader
}

var (
	_ admission.Defaulter[*corev1.Pod] = (*podWebhook)(nil)
	_ admission.Validator[*corev1.Pod] = (*podWebhook)(nil)
)

// SetupPodWebhook registers the exclusive-placement pod webhooks. reader
// should be uncached (mgr.GetAPIReader()).
func SetupPodWebhook(mgr ctrl.Manager, reader client.Reader) error {
	w := &podWebhook{reader: reader}
	return ctrl.NewWebhookManagedBy(mgr, &corev1.Pod{}).
		WithDefaulter(w).
		WithValidator(w).
		Complete()
}

// Default labels JobSet pods with their priority, then gives leaders their
// (anti-)affinity and followers the nodeSelector of their leader's domain.
// When the leader is not scheduled yet it leaves the follower alone; the
// validating webhook then rejects it, and the Job controller retries.
func (w *podWebhook) Default(ctx context.Context, pod *corev1.Pod) error {
	if !isJobSetPod(pod) {
		return nil
	}
	if _, ok := pod.Annotations[jobset.NodeSelectorStrategyKey]; ok {
		return nil
	}
	// Exclusive placement holds among pods of the same priority: a
	// higher-priority JobSet may preempt its way into a domain (upstream
	// jobset#1057). The label is what the leaders' anti-affinity selects on.
	if pod.Spec.Priority != nil {
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[jobset.PriorityKey] = fmt.Sprint(*pod.Spec.Priority)
	}
	topologyKey, ok := exclusiveTopologyKey(pod)
	if !ok {
		return nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("pod", podRef(pod), "topologyKey", topologyKey)
	if isLeader(pod) {
		setExclusiveAffinity(pod, topologyKey)
		log.V(3).Info("Set exclusive affinity on leader pod")
		return nil
	}
	leader, err := w.scheduledLeader(ctx, pod)
	if err != nil {
		log.V(2).Info("Leader not scheduled yet; validation will reject the follower", "reason", err.Error())
		return nil
	}
	domain, err := w.domainOf(ctx, leader, topologyKey)
	if err != nil {
		return err
	}
	if pod.Spec.NodeSelector == nil {
		pod.Spec.NodeSelector = map[string]string{}
	}
	pod.Spec.NodeSelector[topologyKey] = domain
	log.V(3).Info("Set follower nodeSelector to leader's domain", "leader", leader.Name, "node", leader.Spec.NodeName, "domain", domain)
	return nil
}

// ValidateCreate admits a follower only with a nodeSelector for the
// topology and once its leader is scheduled, with upstream's messages (the
// Job controller reports them in its FailedCreate events).
func (w *podWebhook) ValidateCreate(ctx context.Context, pod *corev1.Pod) (admission.Warnings, error) {
	topologyKey, ok := exclusiveTopologyKey(pod)
	if !ok || isLeader(pod) {
		return nil, nil
	}
	if pod.Spec.NodeSelector == nil {
		return nil, errors.New("follower pod node selector not set")
	}
	if _, ok := pod.Spec.NodeSelector[topologyKey]; !ok {
		return nil, fmt.Errorf("follower pod node selector for topology domain not found. missing selector: %s", topologyKey)
	}
	if _, err := w.scheduledLeader(ctx, pod); err != nil {
		return nil, err
	}
	return nil, nil
}

func (w *podWebhook) ValidateUpdate(context.Context, *corev1.Pod, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

func (w *podWebhook) ValidateDelete(context.Context, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// scheduledLeader finds the follower's leader and checks it is scheduled.
func (w *podWebhook) scheduledLeader(ctx context.Context, follower *corev1.Pod) (*corev1.Pod, error) {
	sel, err := leaderSelector(follower)
	if err != nil {
		return nil, err
	}
	var pods corev1.PodList
	if err := w.reader.List(ctx, &pods, client.InNamespace(podNamespace(ctx, follower)), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing leader pods %s: %w", sel, err)
	}
	leader, err := pickLeader(pods.Items, follower)
	if err != nil {
		return nil, err
	}
	if leader.Spec.NodeName == "" {
		return nil, errors.New("leader pod not yet scheduled, not creating follower pod. this is an expected, transient error")
	}
	return leader, nil
}

// domainOf is the value of topologyKey on the leader's node.
func (w *podWebhook) domainOf(ctx context.Context, leader *corev1.Pod, topologyKey string) (string, error) {
	// Only labels are needed, so skip the node's (large) status.
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := w.reader.Get(ctx, client.ObjectKey{Name: leader.Spec.NodeName}, node); err != nil {
		return "", err
	}
	domain, ok := node.Labels[topologyKey]
	if !ok {
		return "", fmt.Errorf("node does not have topology label: %s", topologyKey)
	}
	return domain, nil
}

func podRef(pod *corev1.Pod) string {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "<generated>"
	}
	return pod.Namespace + "/" + name
}

// podNamespace is the pod's namespace, taken from the admission request when
// the object itself does not carry one.
func podNamespace(ctx context.Context, pod *corev1.Pod) string {
	if pod.Namespace != "" {
		return pod.Namespace
	}
	if req, err := admission.RequestFromContext(ctx); err == nil {
		return req.Namespace
	}
	return ""
}
