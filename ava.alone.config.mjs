// The timing-sensitive files, one at a time, after the rest (see ava.config.mjs).
import { ALONE, common } from './ava.config.mjs';

export default { ...common, files: ALONE, concurrency: 1 };
