package webhook

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Pod admission for exclusive placement.
//
// Scope: the objectSelector only sends JobSet pods (jobset-name label), and
// the matchConditions further drop pods without the exclusive-topology
// annotation or with the node-selector strategy, so every other pod in the
// cluster never reaches this server. Only CREATE is intercepted.
//
// failurePolicy=fail, deliberately: with "ignore", a follower admitted while
// the webhook is down would carry no nodeSelector and could land in another
// Job's domain, silently breaking the exclusivity the user asked for. With
// "fail", the Job controller just retries pod creation with backoff until the
// webhook is back. The narrow scope above keeps an outage from blocking any
// pod that does not use exclusive placement (system pods, the agent itself).
//
// +kubebuilder:webhook:path=/mutate--v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=mpod.kb.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10,patch=`{"objectSelector":{"matchExpressions":[{"key":"jobset.sigs.k8s.io/jobset-name","operator":"Exists"}]},"matchConditions":[{"name":"exclusive-topology","expression":"has(object.metadata.annotations) && 'alpha.jobset.sigs.k8s.io/exclusive-topology' in object.metadata.annotations && !('alpha.jobset.sigs.k8s.io/node-selector' in object.metadata.annotations)"}]}`
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

// Default gives leaders their (anti-)affinity and followers the nodeSelector
// of their leader's domain. When the domain is not known yet it leaves the
// follower alone; the validating webhook then rejects it with the reason, and
// the Job controller retries.
func (w *podWebhook) Default(ctx context.Context, pod *corev1.Pod) error {
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
	domain, leader, err := w.leaderDomain(ctx, pod, topologyKey)
	if err != nil {
		log.V(2).Info("Leader domain not known yet; validation will reject the follower", "reason", err.Error())
		return nil
	}
	if pod.Spec.NodeSelector == nil {
		pod.Spec.NodeSelector = map[string]string{}
	}
	pod.Spec.NodeSelector[topologyKey] = domain
	log.V(3).Info("Set follower nodeSelector to leader's domain", "leader", leader.Name, "node", leader.Spec.NodeName, "domain", domain)
	return nil
}

// ValidateCreate admits a follower only once its leader is scheduled and
// only with a nodeSelector naming the leader's domain.
func (w *podWebhook) ValidateCreate(ctx context.Context, pod *corev1.Pod) (admission.Warnings, error) {
	topologyKey, ok := exclusiveTopologyKey(pod)
	if !ok || isLeader(pod) {
		return nil, nil
	}
	selPath := field.NewPath("spec", "nodeSelector").Key(topologyKey)
	got, has := pod.Spec.NodeSelector[topologyKey]
	domain, leader, err := w.leaderDomain(ctx, pod, topologyKey)
	switch {
	case err != nil:
		var transient *notReadyError
		if errors.As(err, &transient) {
			// The Job controller retries the create; this is the expected way
			// followers wait for their leader.
			return nil, podInvalid(pod, field.Forbidden(selPath,
				fmt.Sprintf("follower pod is admitted only after its leader is scheduled (expected, transient): %v", err)))
		}
		return nil, podInvalid(pod, field.InternalError(selPath, fmt.Errorf("looking up the leader's topology domain: %w", err)))
	case !has:
		return nil, podInvalid(pod, field.Required(selPath,
			fmt.Sprintf("must select %q, the %s domain of leader pod %s", domain, topologyKey, leader.Name)))
	case got != domain:
		return nil, podInvalid(pod, field.Invalid(selPath, got,
			fmt.Sprintf("must be %q, the %s domain of leader pod %s on node %s", domain, topologyKey, leader.Name, leader.Spec.NodeName)))
	}
	return nil, nil
}

func (w *podWebhook) ValidateUpdate(context.Context, *corev1.Pod, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

func (w *podWebhook) ValidateDelete(context.Context, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// notReadyError marks the expected wait for a leader to exist or be scheduled.
type notReadyError struct{ msg string }

func (e *notReadyError) Error() string { return e.msg }

// leaderDomain finds the follower's leader and the value of topologyKey on
// the node it is scheduled to.
func (w *podWebhook) leaderDomain(ctx context.Context, follower *corev1.Pod, topologyKey string) (string, *corev1.Pod, error) {
	sel, err := leaderSelector(follower)
	if err != nil {
		return "", nil, err
	}
	var pods corev1.PodList
	if err := w.reader.List(ctx, &pods, client.InNamespace(podNamespace(ctx, follower)), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return "", nil, fmt.Errorf("listing leader pods %s: %w", sel, err)
	}
	leader, err := pickLeader(pods.Items, follower)
	if err != nil {
		return "", nil, &notReadyError{msg: err.Error()}
	}
	if leader.Spec.NodeName == "" {
		return "", leader, &notReadyError{msg: fmt.Sprintf("leader pod %s is not scheduled yet", leader.Name)}
	}
	// Only labels are needed, so skip the node's (large) status.
	node := &metav1.PartialObjectMetadata{}
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	if err := w.reader.Get(ctx, client.ObjectKey{Name: leader.Spec.NodeName}, node); err != nil {
		if apierrors.IsNotFound(err) {
			return "", leader, &notReadyError{msg: fmt.Sprintf("node %s of leader pod %s not found", leader.Spec.NodeName, leader.Name)}
		}
		return "", leader, fmt.Errorf("getting node %s of leader pod %s: %w", leader.Spec.NodeName, leader.Name, err)
	}
	domain, ok := node.Labels[topologyKey]
	if !ok {
		return "", leader, fmt.Errorf("node %s of leader pod %s has no %s label", leader.Spec.NodeName, leader.Name, topologyKey)
	}
	return domain, leader, nil
}

func podInvalid(pod *corev1.Pod, err *field.Error) error {
	name := pod.Name
	if name == "" {
		name = pod.GenerateName
	}
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Pod").GroupKind(), name, field.ErrorList{err})
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
