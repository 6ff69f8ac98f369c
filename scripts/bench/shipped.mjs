// `--import` this after tsx (or import it before any module of src): src modules then load from
// dist/, the compiled code that ships (shipped-hooks.mjs says why).
import { register } from 'node:module';

register('./shipped-hooks.mjs', import.meta.url);
