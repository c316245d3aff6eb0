#!/usr/bin/env bash
# Roll an image out to an environment, then wait until it is healthy (docs/deploy.md).
#
#   deploy/deploy.sh <staging|production> <compose|kubectl> <image> <env file> <base url> [kube context]
#
# compose: docker compose -f docker-compose.prod.yml (project kirana-<env>) pulls the image and
#          recreates what changed; workers get SIGTERM (warm shutdown) and stop_grace_period.
# kubectl: kubectl apply -k deploy/k8s with the image set, then waits for every rollout.
# Either way it then polls <base url>/readyz until 200 (all pools alive, Redis and MongoDB up)
# and exits 1 if that does not happen within HEALTH_TIMEOUT_S (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

env_name=${1:?environment}; how=${2:?compose or kubectl}; image=${3:?image}
env_file=${4:?env file}; base_url=${5:?base url}; context=${6:-}
timeout_s=${HEALTH_TIMEOUT_S:-300}

case "$env_name" in staging|production) ;; *) echo "unknown environment $env_name" >&2; exit 2;; esac

case "$how" in
  compose)
    [ -f "$env_file" ] || { echo "no env file $env_file (secrets stay outside git)" >&2; exit 2; }
    export KIRANA_IMAGE="$image"
    compose=(docker compose -p "kirana-$env_name" --env-file "$env_file" -f docker-compose.prod.yml)
    "${compose[@]}" pull --quiet
    # Migrations first, with the new image, before any new code serves.
    "${compose[@]}" run --rm --no-deps api python -m migrations up
    "${compose[@]}" up -d --remove-orphans --wait --wait-timeout "$timeout_s"
    ;;
  kubectl)
    kubectl_=(kubectl)
    [ -n "$context" ] && kubectl_+=(--context "$context")
    workdir=$(mktemp -d)
    trap 'rm -rf "$workdir"' EXIT
    cp -r deploy/k8s/. "$workdir/"
    (cd "$workdir" && kustomize_image="$image" && \
      sed -i "s|^    newName: kirana$|    newName: ${kustomize_image%:*}|; s|^    newTag: latest$|    newTag: ${kustomize_image##*:}|" \
        kustomization.yaml)
    "${kubectl_[@]}" apply -k "$workdir"
    for deploy in $("${kubectl_[@]}" -n kirana get deploy -o name); do
      "${kubectl_[@]}" -n kirana rollout status "$deploy" --timeout "${timeout_s}s"
    done
    ;;
  *) echo "DEPLOY_WITH must be compose or kubectl, not $how" >&2; exit 2;;
esac

echo "deploy: waiting for $base_url/readyz"
deadline=$(( $(date +%s) + timeout_s ))
until curl -fsS --max-time 5 "$base_url/readyz" >/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "deploy: $base_url/readyz not ready after ${timeout_s}s: roll back (docs/deploy.md, Rollback)" >&2
    exit 1
  fi
  sleep 5
done
echo "deploy: $env_name healthy with $image"
