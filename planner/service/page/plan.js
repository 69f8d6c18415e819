/* What a run page reads from plans: each step's dependencies and the versions' members. */
function refsIn(value, out) {
  if (Array.isArray(value)) value.forEach((v) => refsIn(v, out));
  else if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$ref' && typeof value.$ref === 'string') {
      out.add(value.$ref.split('.')[0]);
    } else keys.forEach((k) => refsIn(value[k], out));
  }
  return out;
}

/* What a plan says of its steps: {id: {deps, tool, description, args, on_failure}}. */
export function planInfo(plan) {
  const info = {};
  for (const st of (plan && plan.steps) || []) {
    const deps = refsIn(st.args || {}, new Set(st.depends_on || []));
    info[st.id] = {
      deps: [...deps].sort(), tool: st.tool, description: st.description || '',
      args: st.args || {}, on_failure: st.on_failure || 'replan', checkpoint: !!st.checkpoint,
    };
  }
  return info;
}

/* Step ids of each plan version, from the versions' diffs (kept + added). */
export function membership(versions) {
  const members = {};
  for (const v of versions) members[v.version] = new Set([...(v.kept || []), ...(v.added || [])]);
  return members;
}

/* The step named in the URL's fragment (#step=ID), if any. */
export function hashStep() {
  const m = location.hash.match(/step=([^&]+)/);
  try { return m ? decodeURIComponent(m[1]) : null; } catch (e) { return null; }
}
